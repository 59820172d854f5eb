"""blockfs2jp2k and export_jp2k: lossless round trips, PSNR against the data's bit depth, OpenJPEG lookup."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blockfs_tasks.cli import jp2k_main
from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import (
    ConfigurationError,
    MissingLibraryError,
    OutOfBoundsError,
    OutputExistsError,
)
from blockfs_tasks.export import jp2k
from blockfs_tasks.export.errors import UnsupportedDTypeError
from blockfs_tasks.export.jp2k import data_peak, export_jp2k, load_glymur, openjpeg_psnr, psnr_db
from blockfs_tasks.ingest.synthetic import SyntheticVolume


@pytest.fixture(scope="module")
def glymur() -> Any:
    return load_glymur()


def make_volume(
    path: Path, data: np.ndarray, block: tuple[int, int, int] = (16, 32, 32), skip: int | None = None
) -> Directory:
    """A closed volume holding ``data`` (z, y, x); every ``skip``-th block left absent."""
    nz, ny, nx = data.shape
    bz, by, bx = block
    path.parent.mkdir(parents=True, exist_ok=True)
    d = Directory(nx, ny, nz, data.dtype, str(path), x_block_size=bx, y_block_size=by, z_block_size=bz)
    d.create()
    items = [
        (data[z : z + bz, y : y + by, x : x + bx], x, y, z)
        for i, (x, y, z) in enumerate(d.grid.origins())
        if not (skip and i % skip == 0)
    ]
    d.write_blocks(items, 2)
    d.close()
    return Directory.open(str(path))


def camera_data(shape: tuple[int, int, int], dtype: str = "uint16") -> np.ndarray:
    """Synthetic light-sheet data with many cells: 12-bit values in uint16 (max < 4096), or 8-bit in uint8."""
    data = SyntheticVolume(shape, dtype=dtype, seed=4, cell_density=3e-4).slab(0, shape[0])
    return np.minimum(data, 4095) if dtype == "uint16" else data


def random_data(shape: tuple[int, int, int], dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(1).integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


# ----------------------------------------------------------------- lossless
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_lossless_round_trip_with_edges_not_on_block_boundaries(tmp_path: Path, glymur: Any, dtype: str) -> None:
    data = random_data((19, 45, 71), dtype)
    data[:, :20] = camera_data((19, 20, 71), dtype)
    d = make_volume(tmp_path / "v" / "vol.blockfs", data)
    paths = export_jp2k(d, str(tmp_path / "out" / "img_%04d.jp2"), n_threads=2)
    assert paths == [str(tmp_path / "out" / f"img_{z:04d}.jp2") for z in range(19)]
    for z, path in enumerate(paths):
        with open(path, "rb") as f:
            assert f.read(12) == b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # a JP2 container, not a raw codestream
        decoded = glymur.Jp2k(path)[:]
        assert decoded.dtype == data.dtype and np.array_equal(decoded, data[z]), z
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp-" in f]


def test_sparse_volume_and_tiny_planes(tmp_path: Path, glymur: Any) -> None:
    data = camera_data((10, 40, 24))
    d = make_volume(tmp_path / "vol.blockfs", data, block=(4, 8, 8), skip=2)
    expected = d[:, :, :]
    assert (expected == 0).any()
    for z, path in enumerate(export_jp2k(d, str(tmp_path / "s_%d.jp2"))):
        assert np.array_equal(glymur.Jp2k(path)[:], expected[z])
    tiny = make_volume(tmp_path / "tiny.blockfs", random_data((2, 3, 5), "uint8"))
    for z, path in enumerate(export_jp2k(tiny, str(tmp_path / "t_%d.jp2"))):
        assert np.array_equal(glymur.Jp2k(path)[:], tiny[z])


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"])
def test_dtypes_jpeg2000_cannot_hold_are_refused(tmp_path: Path, dtype: str) -> None:
    d = make_volume(tmp_path / "vol.blockfs", np.zeros((2, 8, 8), dtype))
    with pytest.raises(UnsupportedDTypeError, match=rf"{dtype}.*supported dtypes: uint8, uint16"):
        export_jp2k(d, str(tmp_path / "p_%d.jp2"))
    assert not list(tmp_path.glob("p_*"))


# --------------------------------------------------------------------- PSNR
def test_psnr_in_glymur_terms_would_miss_badly_on_12_bit_data(tmp_path: Path, glymur: Any) -> None:
    """The problem the exporter solves: glymur's PSNR is against 65535, so 12-bit data comes out far worse."""
    plane = camera_data((1, 256, 256))[0]
    assert data_peak(plane, None) == 4095
    glymur.Jp2k(str(tmp_path / "naive.jp2"), data=plane, psnr=[40])
    naive = psnr_db(plane, glymur.Jp2k(str(tmp_path / "naive.jp2"))[:], 4095)
    assert naive < 30
    assert openjpeg_psnr(40, 4095, 16) == pytest.approx(40 + 24.08, abs=0.01)


@pytest.mark.parametrize("target", [30.0, 40.0, 50.0])
def test_every_plane_meets_the_requested_psnr_against_12_bits(tmp_path: Path, glymur: Any, target: float) -> None:
    data = camera_data((6, 200, 160))
    assert 2048 <= data.max() < 4096
    d = make_volume(tmp_path / "vol.blockfs", data)
    lossy = export_jp2k(d, str(tmp_path / "l_%d.jp2"), psnr=target, n_threads=2)
    lossless = export_jp2k(d, str(tmp_path / "n_%d.jp2"))
    for z, path in enumerate(lossy):
        decoded = glymur.Jp2k(path)[:]
        achieved = psnr_db(data[z], decoded, data_peak(data[z], None))
        assert target <= achieved < math.inf, (z, achieved)
    assert sum(map(os.path.getsize, lossy)) < sum(map(os.path.getsize, lossless)) / 2


def test_psnr_with_uint8_data_and_an_explicit_bit_depth(tmp_path: Path, glymur: Any) -> None:
    data8 = camera_data((3, 120, 100), "uint8")
    d8 = make_volume(tmp_path / "v8" / "vol.blockfs", data8)
    for z, path in enumerate(export_jp2k(d8, str(tmp_path / "u8_%d.jp2"), psnr=35)):
        assert psnr_db(data8[z], glymur.Jp2k(path)[:], data_peak(data8[z], None)) >= 35
    data = camera_data((3, 120, 100))
    d = make_volume(tmp_path / "v16" / "vol.blockfs", data)
    for z, path in enumerate(export_jp2k(d, str(tmp_path / "b16_%d.jp2"), psnr=45, bit_depth=16)):
        assert psnr_db(data[z], glymur.Jp2k(path)[:], 65535) >= 45


def test_bad_psnr_and_bit_depth_are_refused(tmp_path: Path) -> None:
    d = make_volume(tmp_path / "vol.blockfs", camera_data((2, 20, 20)))
    for psnr in (0, -3, float("inf"), "40"):
        with pytest.raises(ConfigurationError, match="psnr"):
            export_jp2k(d, str(tmp_path / "p_%d.jp2"), psnr=psnr)  # type: ignore[arg-type]  # bad values on purpose
    for bits in (0, 17):
        with pytest.raises(ConfigurationError, match=r"bit_depth.*\(1, 16\)"):
            export_jp2k(d, str(tmp_path / "p_%d.jp2"), psnr=40, bit_depth=bits)


# ------------------------------------------------------------ outputs, input
def test_plane_range_existing_rules_and_bad_input(tmp_path: Path, glymur: Any) -> None:
    data = camera_data((8, 40, 40))
    d = make_volume(tmp_path / "vol.blockfs", data)
    pattern = str(tmp_path / "o" / "p_%02d.jp2")
    done: list[tuple[int, int]] = []
    assert export_jp2k(d, pattern, 2, 6, progress=lambda *call: done.append(call)) == [pattern % z for z in range(2, 6)]
    assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(os.listdir(tmp_path / "o")) == [f"p_{z:02d}.jp2" for z in range(2, 6)]
    Path(pattern % 3).write_bytes(b"old")
    export_jp2k(d, pattern, 0, 8, existing="skip")
    assert Path(pattern % 3).read_bytes() == b"old"
    with pytest.raises(OutputExistsError, match=r"p_00.jp2.*8 of planes \[0, 8\) exist"):
        export_jp2k(d, pattern, existing="error")
    export_jp2k(d, pattern, 3, 4)  # replace
    assert np.array_equal(glymur.Jp2k(pattern % 3)[:], data[3])
    with pytest.raises(ConfigurationError, match="%d-style field"):
        export_jp2k(d, str(tmp_path / "plane.jp2"))
    with pytest.raises(OutOfBoundsError, match="outside the volume"):
        export_jp2k(d, pattern, 4, 9)
    with pytest.raises(ConfigurationError, match="memory_budget"):
        export_jp2k(d, pattern, memory_budget=1000)
    one_plane = 40 * 40 * (jp2k.CODEC_BYTES_PER_PIXEL + 4)  # room to encode one plane at a time, not two
    export_jp2k(d, str(tmp_path / "small_%d.jp2"), n_threads=2, memory_budget=one_plane)
    for z in range(8):
        assert np.array_equal(glymur.Jp2k(str(tmp_path / f"small_{z}.jp2"))[:], data[z])


def test_a_failure_mid_export_leaves_no_partial_plane(
    tmp_path: Path, glymur: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = camera_data((12, 64, 64))
    d = make_volume(tmp_path / "vol.blockfs", data, block=(4, 32, 32))
    real = jp2k._write_jp2
    calls = {"n": 0}

    def failing(glymur: Any, plane: np.ndarray, path: str, psnr: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 7:
            real(glymur, plane[: plane.shape[0] // 2], path, psnr)  # a half-written file at the temporary path
            raise RuntimeError("injected encoder failure")
        real(glymur, plane, path, psnr)

    monkeypatch.setattr(jp2k, "_write_jp2", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        export_jp2k(d, str(out / "p_%02d.jp2"), n_threads=2)
    names = os.listdir(out)
    assert not [f for f in names if ".tmp-" in f]
    assert 0 < len(names) < 12
    for name in names:
        z = int(name[2:4])
        assert np.array_equal(glymur.Jp2k(str(out / name))[:], data[z])


# --------------------------------------------------------------------- HTJ2K
def test_htj2k_codestreams_round_trip(tmp_path: Path, glymur: Any) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    if not imagecodecs.HTJ2K.available:
        pytest.skip("imagecodecs here has no HTJ2K")
    data = camera_data((5, 45, 70))
    d = make_volume(tmp_path / "vol.blockfs", data, skip=3)
    expected = d[:, :, :]
    for z, path in enumerate(export_jp2k(d, str(tmp_path / "h_%d.j2c"), codec="htj2k", n_threads=2)):
        raw = Path(path).read_bytes()
        assert raw[:2] == b"\xff\x4f"  # a raw codestream (SOC marker)
        assert np.array_equal(imagecodecs.htj2k_decode(raw), expected[z])
        assert np.array_equal(glymur.Jp2k(path)[:], expected[z])
    assert jp2k_main(["--input", str(tmp_path / "vol.blockfs"), "--output-pattern", str(tmp_path / "c_%d.jhc"),
                      "--htj2k", "--silent"]) == 0
    assert np.array_equal(glymur.Jp2k(str(tmp_path / "c_4.jhc"))[:], expected[4])
    with pytest.raises(ConfigurationError, match="lossless only"):
        export_jp2k(d, str(tmp_path / "h_%d.j2c"), codec="htj2k", psnr=40)
    with pytest.raises(ConfigurationError, match=r"not JP2 files.*\.j2c"):
        export_jp2k(d, str(tmp_path / "h_%d.jp2"), codec="htj2k")
    with pytest.raises(ConfigurationError, match="'jp2', 'htj2k'"):
        export_jp2k(d, str(tmp_path / "h_%d.j2c"), codec="jpeg")


# ------------------------------------------------------------------ OpenJPEG
def _fresh(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with no user glymurrc (HOME and the cwd are tmp_path)."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env=env,
    )


def test_the_library_bundled_with_pillow_is_found_without_configuration(tmp_path: Path) -> None:
    if jp2k.pillow_openjp2() is None:
        pytest.skip("the installed Pillow bundles no libopenjp2")
    result = _fresh(
        """
        import os, numpy as np
        from blockfs_tasks.export import jp2k
        jp2k.system_openjp2 = lambda: None  # as on a machine without libopenjp2-7
        glymur = jp2k.load_glymur()
        assert 'XDG_CONFIG_HOME' not in os.environ
        print(glymur.version.openjpeg_version)
        plane = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
        jp2k.encode_plane(glymur, plane, 'plane.jp2')
        assert np.array_equal(glymur.Jp2k('plane.jp2')[:], plane)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    major, minor = (int(p) for p in result.stdout.split(".")[:2])
    assert (major, minor) >= (2, 4)


def test_no_openjpeg_at_all_is_a_clear_error(tmp_path: Path) -> None:
    result = _fresh(
        """
        from blockfs_tasks.export import jp2k
        jp2k.system_openjp2 = lambda: None
        jp2k.pillow_openjp2 = lambda: None
        import ctypes.util
        ctypes.util.find_library = lambda name: None  # glymur's own lookup finds nothing either
        try:
            jp2k.load_glymur()
        except ImportError as e:
            print(type(e).__name__, e)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(MissingLibraryError.__name__)
    assert "apt-get install libopenjp2-7" in result.stdout and "pip install pillow" in result.stdout


def test_no_openjpeg_is_exit_1_from_the_cli(tmp_path: Path) -> None:
    make_volume(tmp_path / "vol.blockfs", camera_data((2, 20, 20)))
    result = _fresh(
        f"""
        import sys, ctypes.util
        from blockfs_tasks.export import jp2k
        from blockfs_tasks.cli import jp2k_main
        jp2k.pillow_openjp2 = lambda: None
        ctypes.util.find_library = lambda name: None
        sys.exit(jp2k_main(["--input", {str(tmp_path / "vol.blockfs")!r}, "--output-pattern", "p_%d.jp2", "--silent"]))
        """,
        tmp_path,
    )
    assert result.returncode == 1
    assert "blockfs2jp2k: error:" in result.stderr and "libopenjp2" in result.stderr
    assert not list(tmp_path.glob("p_*"))


# ----------------------------------------------------------------------- CLI
def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        jp2k_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "img_%04d.jp2" in out and "--psnr" in out and "--htj2k" in out


def test_cli_lossless_and_psnr(tmp_path: Path, glymur: Any) -> None:
    data = camera_data((4, 60, 50))
    make_volume(tmp_path / "vol.blockfs", data)
    base = ["--input", str(tmp_path / "vol.blockfs"), "--silent", "--n-workers", "2"]
    assert jp2k_main([*base, "--output-pattern", str(tmp_path / "a" / "p_%d.jp2")]) == 0
    assert jp2k_main([*base, "--output-pattern", str(tmp_path / "b" / "p_%d.jp2"), "--psnr", "42"]) == 0
    for z in range(4):
        assert np.array_equal(glymur.Jp2k(str(tmp_path / "a" / f"p_{z}.jp2"))[:], data[z])
        lossy = glymur.Jp2k(str(tmp_path / "b" / f"p_{z}.jp2"))[:]
        assert 42 <= psnr_db(data[z], lossy, data_peak(data[z], None)) < math.inf


def test_a_rerun_sweeps_dead_plane_temporaries(tmp_path: Path, glymur: Any) -> None:
    """Temporaries that a killed export left (issue 9 item 12) go on the next run; other files stay."""
    data = camera_data((4, 32, 32))
    d = make_volume(tmp_path / "vol.blockfs", data)
    out = tmp_path / "o"
    out.mkdir()
    pattern = str(out / "p_%02d.jp2")
    script = (
        "from blockfs_tasks.core.atomic import temporary_name as t; import sys; print(*[t(p) for p in sys.argv[1:]])"
    )
    names = subprocess.run([sys.executable, "-c", script, pattern % 0, pattern % 3, str(out / "keep.txt")],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in names:  # their process has ended: dead temporaries
        Path(name).write_bytes(b"half a plane")
    export_jp2k(d, pattern, n_threads=1)
    assert sorted(os.listdir(out)) == sorted([f"p_{z:02d}.jp2" for z in range(4)] + [os.path.basename(names[2])])
