"""blockfs2tif and export_tiff: round trips for every dtype, bounded memory, atomic outputs, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from blockfs_tasks.cli import tif_main
from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import (
    ConfigurationError,
    DestinationError,
    OutOfBoundsError,
    OutputExistsError,
)
from blockfs_tasks.export import planes, tiff
from blockfs_tasks.export.planes import (
    check_pattern,
    contiguous_groups,
    missing_planes,
    plane_complete,
    plane_path,
    plane_slabs,
)
from blockfs_tasks.export.tiff import export_tiff, plan_tiff

ALL_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")


def volume_data(shape: tuple[int, int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """Random data over the dtype's range; floats get NaN, infinities and -0.0 too."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dt.kind == "f":
        out = (rng.standard_normal(shape) * 1e3).astype(dt)
        out.flat[:5] = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).max], dt)
        return out
    info = np.iinfo(dt)
    out = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    out[:, : shape[1] // 2] //= 7  # some compressible structure
    return out


def make_volume(
    path: Path, data: np.ndarray, block: tuple[int, int, int] = (16, 16, 16), skip: int | None = None
) -> Directory:
    """A closed volume holding ``data`` (z, y, x) with (z, y, x) blocks; every ``skip``-th block left absent."""
    nz, ny, nx = data.shape
    bz, by, bx = block
    path.parent.mkdir(parents=True, exist_ok=True)
    d = Directory(nx, ny, nz, data.dtype, str(path), x_block_size=bx, y_block_size=by, z_block_size=bz)
    d.create()
    items = []
    for i, (x, y, z) in enumerate(d.grid.origins()):
        if skip and i % skip == 0:
            continue
        items.append((data[z : z + bz, y : y + by, x : x + bx], x, y, z))
    d.write_blocks(items, 2)
    d.close()
    return Directory.open(str(path))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes, dtypes and bits (NaN payloads and -0.0 included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}")))


def temporaries(folder: Path) -> list[str]:
    return [f for f in os.listdir(folder) if ".tmp-" in f]


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_round_trips_with_edges_not_on_block_boundaries(tmp_path: Path, dtype: str) -> None:
    data = volume_data((21, 37, 43), dtype)
    d = make_volume(tmp_path / "v" / "vol.blockfs", data)
    paths = export_tiff(d, str(tmp_path / "out" / "img_%04d.tif"), n_threads=2)
    assert paths == [str(tmp_path / "out" / f"img_{z:04d}.tif") for z in range(21)]
    for z, path in enumerate(paths):
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 1
            assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert same_bits(tif.asarray(), data[z]), f"plane {z}"
    assert temporaries(tmp_path / "out") == []


@pytest.mark.parametrize("level", [0, 1, 9])
def test_levels_and_uncompressed(tmp_path: Path, level: int) -> None:
    data = volume_data((5, 40, 33), "uint16")
    d = make_volume(tmp_path / "vol.blockfs", data)
    paths = export_tiff(d, str(tmp_path / "o_%d.tiff"), level=level)
    expected = tifffile.COMPRESSION.NONE if level == 0 else tifffile.COMPRESSION.ADOBE_DEFLATE
    for z, path in enumerate(paths):
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].compression == expected
            assert np.array_equal(tif.asarray(), data[z])


def test_sparse_volume_reads_zeros_where_blocks_are_absent(tmp_path: Path) -> None:
    data = volume_data((20, 30, 40), "uint16", seed=3)
    d = make_volume(tmp_path / "vol.blockfs", data, block=(8, 8, 8), skip=3)
    expected = d[:, :, :]
    assert (expected == 0).any() and not np.array_equal(expected, data)  # really sparse
    for z, path in enumerate(export_tiff(d, str(tmp_path / "s_%03d.tif"))):
        assert np.array_equal(tifffile.imread(path), expected[z])


def test_a_volume_with_no_blocks_exports_zero_planes(tmp_path: Path) -> None:
    d = Directory(30, 20, 3, np.uint16, str(tmp_path / "empty.blockfs"))
    d.create()
    d.close()
    for path in export_tiff(str(tmp_path / "empty.blockfs"), str(tmp_path / "e_%d.tif")):
        assert np.array_equal(tifffile.imread(path), np.zeros((20, 30), np.uint16))


def test_a_plane_range_writes_only_those_planes(tmp_path: Path) -> None:
    data = volume_data((30, 20, 20), "uint8")
    d = make_volume(tmp_path / "vol.blockfs", data)
    pattern = str(tmp_path / "r" / "p_%02d.tif")
    calls: list[tuple[int, int]] = []
    paths = export_tiff(d, pattern, 7, 19, progress=lambda done, total: calls.append((done, total)))
    assert sorted(os.listdir(tmp_path / "r")) == [f"p_{z:02d}.tif" for z in range(7, 19)]
    assert paths == [pattern % z for z in range(7, 19)]
    assert calls[-1] == (12 * 20, 12 * 20)  # plane rows
    assert missing_planes(pattern, 0, 30) == list(range(7)) + list(range(19, 30))
    for z in range(7, 19):
        assert np.array_equal(tifffile.imread(pattern % z), data[z])
    assert export_tiff(d, pattern, 5, 5) == []


def test_one_and_two_workers_write_identical_files(tmp_path: Path) -> None:
    data = volume_data((9, 50, 60), "int16")
    d = make_volume(tmp_path / "vol.blockfs", data)
    one = export_tiff(d, str(tmp_path / "a_%d.tif"), n_threads=1)
    two = export_tiff(d, str(tmp_path / "b_%d.tif"), n_threads=2)
    for a, b in zip(one, two, strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()


# ------------------------------------------------------------- bounded memory
def test_wide_planes_stay_under_a_small_memory_budget(tmp_path: Path) -> None:
    """Planes 8x wider than tall, a budget below one block slab of planes: bands and small groups."""
    data = volume_data((16, 48, 3000), "uint16", seed=5)
    d = make_volume(tmp_path / "vol.blockfs", data, block=(8, 8, 256))
    budget = 2_000_000
    slab_bytes = 8 * 48 * 3000 * 2  # one block depth of whole planes: what a naive export holds
    assert slab_bytes > budget
    plan = plan_tiff(d.shape, d.grid.block_shape, 2, 2, budget)
    assert plan.group_planes < 8 and plan.band_rows < 48 and plan.peak_bytes <= budget

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        export_tiff(d, str(tmp_path / "w_%02d.tif"), n_threads=2, memory_budget=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < budget, f"peak {peak} bytes over the budget {budget}"
    for z in range(16):
        assert np.array_equal(tifffile.imread(tmp_path / f"w_{z:02d}.tif"), data[z])


def test_plan_prefers_whole_block_slabs_and_bounded_bands() -> None:
    plan = plan_tiff((512, 1024, 1024), (64, 64, 64), 2, 2)
    assert plan.group_planes == 64 and plan.band_rows % 64 == 0
    assert plan.peak_bytes <= planes.DEFAULT_MEMORY_BUDGET and not plan.bigtiff
    wide = plan_tiff((64, 20000, 20000), (64, 64, 64), 2, 2, 256 << 20)
    assert wide.peak_bytes <= 256 << 20 and wide.band_rows == 64
    assert wide.rows_per_strip * 20000 * 2 <= tiff.STRIP_TARGET and 64 % wide.rows_per_strip == 0
    with pytest.raises(ConfigurationError, match="memory_budget"):
        plan_tiff((64, 20000, 20000), (64, 64, 64), 2, 2, 1 << 20)


def test_bigtiff_when_a_plane_needs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_tiff((1, 50000, 50000), (64, 64, 64), 2, 2).bigtiff  # 5 GB plane
    assert not plan_tiff((1, 40000, 50000), (64, 64, 64), 1, 2).bigtiff  # 2 GB plane
    monkeypatch.setattr(tiff, "CLASSIC_TIFF_LIMIT", 1000)  # so a small plane "needs" BigTIFF
    data = volume_data((3, 30, 40), "uint16")
    d = make_volume(tmp_path / "vol.blockfs", data)
    for z, path in enumerate(export_tiff(d, str(tmp_path / "big_%d.tif"))):
        with tifffile.TiffFile(path) as tif:
            assert tif.is_bigtiff
            assert np.array_equal(tif.asarray(), data[z])


# --------------------------------------------------------------- existing files
def test_existing_outputs_are_replaced_by_default(tmp_path: Path) -> None:
    data = volume_data((4, 20, 20), "uint8")
    d = make_volume(tmp_path / "vol.blockfs", data)
    (tmp_path / "x_1.tif").write_bytes(b"old")
    export_tiff(d, str(tmp_path / "x_%d.tif"))
    assert np.array_equal(tifffile.imread(tmp_path / "x_1.tif"), data[1])


def test_existing_skip_leaves_finished_planes_alone(tmp_path: Path) -> None:
    data = volume_data((4, 20, 20), "uint8")
    d = make_volume(tmp_path / "vol.blockfs", data)
    (tmp_path / "x_1.tif").write_bytes(b"old")
    export_tiff(d, str(tmp_path / "x_%d.tif"), existing="skip")
    assert (tmp_path / "x_1.tif").read_bytes() == b"old"
    for z in (0, 2, 3):
        assert np.array_equal(tifffile.imread(tmp_path / f"x_{z}.tif"), data[z])


def test_existing_error_writes_nothing(tmp_path: Path) -> None:
    d = make_volume(tmp_path / "vol.blockfs", volume_data((4, 20, 20), "uint8"))
    (tmp_path / "x_2.tif").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="x_2.tif"):
        export_tiff(d, str(tmp_path / "x_%d.tif"), existing="error")
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("x_")) == ["x_2.tif"]
    with pytest.raises(ConfigurationError, match="'replace', 'skip', 'error'"):
        export_tiff(d, str(tmp_path / "x_%d.tif"), existing="overwrite")


# ------------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_clear_errors(tmp_path: Path) -> None:
    d = make_volume(tmp_path / "vol.blockfs", volume_data((6, 20, 20), "uint16"))
    with pytest.raises(ConfigurationError, match="%d-style field"):
        export_tiff(d, str(tmp_path / "plane.tif"))
    with pytest.raises(ConfigurationError, match="%d-style field"):
        export_tiff(d, str(tmp_path / "plane_%d_%d.tif"))
    for z0, z1 in [(0, 7), (-1, 3), (4, 2)]:
        with pytest.raises(OutOfBoundsError, match=r"outside the volume.*<= 6"):
            export_tiff(d, str(tmp_path / "p_%d.tif"), z0, z1)
    for level in (10, -1):
        with pytest.raises(ConfigurationError, match=r"range \(0, 9\)"):
            export_tiff(d, str(tmp_path / "p_%d.tif"), level=level)
    with pytest.raises(ConfigurationError, match=r"compression level to be an integer"):
        export_tiff(d, str(tmp_path / "p_%d.tif"), level=2.5)  # type: ignore[arg-type]  # a wrong type on purpose
    with pytest.raises(ConfigurationError, match="n_threads"):
        export_tiff(d, str(tmp_path / "p_%d.tif"), n_threads=0)
    assert not list(tmp_path.glob("p_*"))


def test_an_unwritable_destination_is_a_destination_error(tmp_path: Path) -> None:
    d = make_volume(tmp_path / "vol.blockfs", volume_data((3, 20, 20), "uint16"))
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(DestinationError, match="a_file"):
        export_tiff(d, str(tmp_path / "a_file" / "sub" / "p_%d.tif"))
    assert isinstance(DestinationError("x"), OSError)


def test_pattern_and_completion_helpers(tmp_path: Path) -> None:
    pattern = str(tmp_path / "img_%04d.tif")
    assert check_pattern(Path(pattern)) == pattern
    assert plane_path(pattern, 12) == str(tmp_path / "img_0012.tif")
    assert not plane_complete(pattern, 12)
    (tmp_path / "img_0012.tif").write_bytes(b"x")
    (tmp_path / "img_0013.tif.tmp-host-1").write_bytes(b"x")  # a temporary never counts
    assert plane_complete(pattern, 12) and not plane_complete(pattern, 13)
    assert missing_planes(pattern, 11, 14) == [11, 13]
    assert contiguous_groups([0, 1, 2, 3, 5, 6, 8, 9], 4, 3) == [(0, 3), (3, 4), (5, 7), (8, 10)]


def test_plane_slabs_follow_block_rows(tmp_path: Path) -> None:
    d = make_volume(tmp_path / "vol.blockfs", volume_data((21, 8, 8), "uint8"), block=(8, 8, 8))
    assert plane_slabs(d) == [(0, 8), (8, 16), (16, 21)]
    assert plane_slabs(str(tmp_path / "vol.blockfs"), 10) == [(0, 16), (16, 21)]
    with pytest.raises(ConfigurationError, match="planes_per_slab"):
        plane_slabs(d, 0)


# ---------------------------------------------------------- interrupted exports
def _check_outputs_whole(folder: Path, data: np.ndarray, prefix: str) -> list[int]:
    """Every file at a plane's path holds the whole plane; no temporary is left; return the planes present."""
    assert temporaries(folder) == []
    present = sorted(int(f[len(prefix) : -4]) for f in os.listdir(folder) if f.startswith(prefix))
    for z in present:
        assert np.array_equal(tifffile.imread(folder / f"{prefix}{z:03d}.tif"), data[z]), z
    return present


def test_a_failure_while_reading_blocks_leaves_no_partial_plane(tmp_path: Path) -> None:
    data = volume_data((24, 40, 40), "uint16")
    d = make_volume(tmp_path / "vol.blockfs", data, block=(8, 8, 8))
    calls = {"n": 0}
    read_block = d.read_block

    def failing(x: int, y: int, z: int) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 60:  # in the middle of the second block slab
            raise RuntimeError("injected read failure")
        return read_block(x, y, z)

    d.read_block = failing  # type: ignore[method-assign,assignment]  # this instance only; the export passes no out=
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        export_tiff(d, str(out / "p_%03d.tif"), n_threads=2, memory_budget=1_500_000)
    present = _check_outputs_whole(out, data, "p_")
    assert len(present) < 24


def test_a_failure_while_encoding_strips_leaves_no_partial_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = volume_data((16, 64, 64), "uint16")
    d = make_volume(tmp_path / "vol.blockfs", data, block=(8, 8, 64))
    real = tiff.strip_encoder
    calls = {"n": 0}
    plan = plan_tiff(d.shape, d.grid.block_shape, 2, 2, 1_000_000)
    assert plan.group_planes < 16
    half = 16 * -(-64 // plan.rows_per_strip) // 2 + 1

    def encoder(level: int) -> Callable[[np.ndarray], bytes]:
        encode = real(level)

        def counting(strip: np.ndarray) -> bytes:
            calls["n"] += 1
            if calls["n"] == half:  # a later group, after some strips of each of its planes were written
                raise RuntimeError("injected encode failure")
            return encode(strip)

        return counting

    monkeypatch.setattr(tiff, "strip_encoder", encoder)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        export_tiff(d, str(out / "p_%03d.tif"), n_threads=2, memory_budget=1_000_000)
    present = _check_outputs_whole(out, data, "p_")
    assert len(present) < 16


def test_a_failing_plane_writer_stops_the_export_without_hanging(tmp_path: Path) -> None:
    data = volume_data((8, 64, 64), "uint16")
    d = make_volume(tmp_path / "vol.blockfs", data, block=(8, 8, 64))
    out = tmp_path / "out"
    (out / "p_003.tif").mkdir(parents=True)  # the rename onto plane 3 fails
    errors: list[BaseException] = []

    def run() -> None:
        try:
            export_tiff(d, str(out / "p_%03d.tif"), n_threads=2, memory_budget=600_000)
        except BaseException as e:  # any error: handed to the test thread
            errors.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "export hung after a writer failed"
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    os.rmdir(out / "p_003.tif")
    _check_outputs_whole(out, data, "p_")


def test_a_killed_export_leaves_only_whole_planes_and_the_rerun_removes_its_temporaries(tmp_path: Path) -> None:
    """SIGKILL while a group is half-written (on progress, never on a timer): files at plane paths are whole,
    and rerunning the same export removes the dead run's plane temporaries (issue 9 item 12)."""
    data = volume_data((64, 96, 2048), "uint16", seed=9)
    make_volume(tmp_path / "vol.blockfs", data, block=(4, 32, 512))
    out = tmp_path / "out"
    pattern = str(out / "p_%03d.tif")
    script = textwrap.dedent(
        f"""
        import os, signal
        from blockfs_tasks.export.tiff import export_tiff

        def progress(done, total):
            # the first group (4 planes of 96 rows) is published, and a band of the third one was handed out
            if done > 8 * 96:
                os.kill(os.getpid(), signal.SIGKILL)

        export_tiff({str(tmp_path / "vol.blockfs")!r}, {pattern!r}, level=9, n_threads=1,
                    memory_budget=6 << 20, progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = temporaries(out)
    present = sorted(int(f[2:5]) for f in os.listdir(out) if ".tmp-" not in f)
    assert left and 0 < len(present) < 64, (left, present)
    for z in present:
        assert np.array_equal(tifffile.imread(out / f"p_{z:03d}.tif"), data[z]), z
    assert all(plane_complete(pattern, z) == (z in present) for z in range(64))

    export_tiff(str(tmp_path / "vol.blockfs"), pattern, n_threads=1)  # the same command again
    assert temporaries(out) == []
    for z in range(64):
        assert np.array_equal(tifffile.imread(pattern % z), data[z]), z


def dead_temporary(path: str) -> str:
    """A temporary name of ``path`` owned by a process that has ended."""
    done = subprocess.run(
        [
            sys.executable, "-c",
            f"from blockfs_tasks.core.atomic import temporary_name; print(temporary_name({path!r}))",
        ],
        capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


def test_dead_temporaries_of_the_range_are_swept_and_nothing_else(tmp_path: Path) -> None:
    data = volume_data((8, 20, 20), "uint8")
    d = make_volume(tmp_path / "vol.blockfs", data)
    out = tmp_path / "out"
    out.mkdir()
    pattern = str(out / "p_%02d.tif")
    dead = [dead_temporary(pattern % z) for z in (1, 6)]
    outside = dead_temporary(pattern % 7)  # a plane outside the range exported
    foreign = dead_temporary(str(out / "notes.txt"))  # not a plane of this pattern
    # A live process (say a concurrent export on this host) owns this one: it must stay.
    live = subprocess.Popen(
        [sys.executable, "-c", "import sys; from blockfs_tasks.core.atomic import temporary_name; "
         f"print(temporary_name({pattern % 2!r}), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        alive = live.stdout.readline().strip()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        for path in [*dead, outside, alive, foreign]:
            Path(path).write_bytes(b"x" * 100)
        export_tiff(d, pattern, 0, 7, n_threads=1)
    finally:
        live.communicate("", timeout=60)
    assert sorted(temporaries(out)) == sorted(os.path.basename(p) for p in (outside, alive, foreign))
    assert sorted(f for f in os.listdir(out) if ".tmp-" not in f) == [f"p_{z:02d}.tif" for z in range(7)]


# ------------------------------------------------------------------------ CLI
def test_cli_exports_every_plane(tmp_path: Path) -> None:
    data = volume_data((5, 30, 30), "uint16")
    make_volume(tmp_path / "vol.blockfs", data)
    pattern = str(tmp_path / "cli" / "img_%04d.tiff")
    argv = ["--input", str(tmp_path / "vol.blockfs"), "--output-pattern", pattern, "--silent",
            "--compression", "6", "--n-workers", "2", "--memory-budget", "64M"]
    assert tif_main(argv) == 0
    for z in range(5):
        assert np.array_equal(tifffile.imread(pattern % z), data[z])


def test_cli_help_shows_the_pattern_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tif_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--output-pattern" in out and "img_%04d.tiff" in out and "--compression" in out


def test_cli_errors_exit_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_volume(tmp_path / "vol.blockfs", volume_data((5, 30, 30), "uint16"))
    argv = ["--input", str(tmp_path / "vol.blockfs"), "--silent"]
    assert tif_main([*argv, "--output-pattern", str(tmp_path / "no_field.tif")]) == 1
    assert "%d-style field" in capsys.readouterr().err
    assert tif_main([*argv, "--output-pattern", str(tmp_path / "p_%d.tif"), "--z1", "9"]) == 1
    assert "outside the volume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        tif_main([*argv, "--output-pattern", str(tmp_path / "p_%d.tif"), "--compression", "12"])
    assert exit_info.value.code == 2
