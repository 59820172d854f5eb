"""The core's console scripts: blockfs-mv, -cp, -rebase, -info, -verify, for both format versions."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from v1_writer import write_v1_volume

from blockfs_tasks.cli import cp_main, info_main, mv_main, rebase_main, verify_main
from blockfs_tasks.core import BlockfsError, Directory


def _block(seed: int, shape: tuple[int, int, int], dtype: str = "uint16") -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def make_v2(folder: Path, name: str = "vol.blockfs", metadata: dict | None = None) -> tuple[Path, np.ndarray]:
    """A 2.0.0 volume (50 x 40 x 30, x y z; 24 blocks) written by two processes, so it has two block files."""
    import multiprocessing

    folder.mkdir(parents=True, exist_ok=True)
    data = _block(1, (30, 40, 50))
    d = Directory(50, 40, 30, np.uint16, folder / name, 16, 16, 16, metadata=metadata)
    d.create()
    origins = list(d.grid.origins())
    for x, y, z in origins[::2]:
        d.write_block(data[z : z + 16, y : y + 16, x : x + 16], x, y, z)
    p = multiprocessing.get_context("fork").Process(
        target=lambda: [d.write_block(data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in origins[1::2]]
    )
    p.start()
    p.join()
    assert p.exitcode == 0
    d.close()
    return folder / name, data


def make_v1(folder: Path, absolute: bool = True) -> tuple[Path, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    data = _block(2, (20, 33, 47), "int16")
    v = write_v1_volume(folder / "precomputed.blockfs", data, (16, 16, 8), n_files=3, absolute_names=absolute,
                        metadata={"origin": "v1"})
    return Path(v.path), data


def stored_names(path: Path) -> list[str]:
    raw = path.read_bytes()
    (m,) = struct.unpack_from("<I", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    return md.get("BlockFilenames", md.get("BlockFiles"))


def volume_files(folder: Path, name: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f == name or f.startswith(name + "."))


def reads_as(path: Path, data: np.ndarray) -> bool:
    d = Directory.open(path)
    return d[:].tobytes() == data.tobytes() and d.shape == data.shape


MAKERS: dict[str, Callable[[Path], tuple[Path, np.ndarray]]] = {"v2": make_v2, "v1": make_v1}


# ------------------------------------------------------------------------ mv
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_mv(tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]) -> None:
    src, data = MAKERS[version](tmp_path / "a")
    name = src.name
    n_files = len(volume_files(src.parent, name))
    assert mv_main([str(src), str(tmp_path / "b" / "new")]) == 1  # the parent of the destination must exist
    assert reads_as(src, data)  # ... and nothing moved
    assert mv_main([str(src), str(tmp_path / "b")]) == 0
    dest = tmp_path / "b" / name
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(dest)
    assert volume_files(tmp_path / "a", name) == []
    assert len(volume_files(tmp_path / "b", name)) == n_files
    assert reads_as(dest, data)
    names = stored_names(dest)
    if version == "v1":  # absolute paths, rewritten to the new place (as the original tool did)
        assert names == [str(tmp_path / "b" / f"{name}.{i}") for i in range(3)]
        assert Directory.open(dest).metadata == {"origin": "v1"}
    else:
        assert names == [f"{name}.0", f"{name}.1"]


def test_mv_v1_golden_volume(tmp_path: Path, v1_copy: Callable[[str], Path]) -> None:
    src = v1_copy("v1_uint8_lz4_sparse")
    expected = np.load(src.parent / "expected.npy")
    assert mv_main([str(src), str(tmp_path / "moved")]) == 0
    dest = tmp_path / "moved" / "precomputed.blockfs"
    assert reads_as(dest, expected)
    assert all(n.startswith(str(tmp_path / "moved")) for n in stored_names(dest))


# ------------------------------------------------------------------------ cp
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cp(tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]) -> None:
    src, data = MAKERS[version](tmp_path / "a")
    before = {f: (src.parent / f).read_bytes() for f in volume_files(src.parent, src.name)}
    assert cp_main([str(src), str(tmp_path / "b")]) == 0
    dest = tmp_path / "b" / src.name
    assert capsys.readouterr().out.strip() == str(dest)
    assert {f: (src.parent / f).read_bytes() for f in volume_files(src.parent, src.name)} == before  # source intact
    assert reads_as(src, data)
    shutil.rmtree(tmp_path / "a")  # the copy stands alone: it does not point at the source's files
    assert reads_as(dest, data)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cp_refuses_to_overwrite_another_volume(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src, data = MAKERS[version](tmp_path / "a")
    other, other_data = MAKERS[version](tmp_path / "other")
    other_data = Directory.open(other)[:]
    shutil.copytree(tmp_path / "other", tmp_path / "b")  # another volume of the same name at the destination
    dest = tmp_path / "b" / src.name
    if version == "v1":  # same names and index, other bytes in a block file
        assert rebase_main([str(dest)]) == 0
        block_file = Path(f"{dest}.0")
        raw = bytearray(block_file.read_bytes())
        raw[-1] ^= 0xFF
        block_file.write_bytes(bytes(raw))
        other_data = None
    else:  # v2 volumes of the same maker are equal: make this one differ
        with Directory.open(dest, "r+") as d:
            d.write_block(np.zeros((16, 16, 16), np.uint16), 0, 0, 0)
        other_data = Directory.open(dest)[:]
    before = {f: (tmp_path / "b" / f).read_bytes() for f in volume_files(tmp_path / "b", src.name)}
    capsys.readouterr()
    assert cp_main([str(src), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "blockfs-cp: error:" in err and "already exists" in err and str(tmp_path / "b") in err
    assert len(err.strip().splitlines()) == 1
    assert {f: (tmp_path / "b" / f).read_bytes() for f in volume_files(tmp_path / "b", src.name)} == before
    if other_data is not None:
        assert same_array(Directory.open(dest)[:], other_data)
    assert mv_main([str(src), str(tmp_path / "b")]) == 1  # mv refuses too, and leaves the source alone
    assert reads_as(src, data)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cp_and_mv_twice_do_nothing_the_second_time(tmp_path: Path, version: str) -> None:
    """A finished copy or move is done: running the same command again succeeds and changes nothing."""
    src, data = MAKERS[version](tmp_path / "a")
    assert cp_main([str(src), str(tmp_path / "b")]) == 0
    dest = tmp_path / "b" / src.name
    before = {f: (tmp_path / "b" / f).read_bytes() for f in volume_files(tmp_path / "b", src.name)}
    assert cp_main([str(src), str(tmp_path / "b")]) == 0
    assert {f: (tmp_path / "b" / f).read_bytes() for f in volume_files(tmp_path / "b", src.name)} == before
    assert reads_as(src, data) and reads_as(dest, data)
    assert mv_main([str(src), str(tmp_path / "c")]) == 0
    assert mv_main([str(src), str(tmp_path / "c")]) == 0
    assert volume_files(tmp_path / "a", src.name) == []
    assert reads_as(tmp_path / "c" / src.name, data)


def test_cp_with_a_missing_block_file_copies_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v2(tmp_path / "a")
    os.unlink(f"{src}.1")
    assert cp_main([str(src), str(tmp_path / "b")]) == 1
    assert f"{src}.1" in capsys.readouterr().err
    assert not (tmp_path / "b" / src.name).exists()


# -------------------------------------------------------------------- rebase
def test_rebase_v1_after_moving_by_hand(tmp_path: Path) -> None:
    src, data = make_v1(tmp_path / "cluster")
    assert all(n.startswith(str(tmp_path / "cluster")) for n in stored_names(src))
    shutil.move(tmp_path / "cluster", tmp_path / "laptop")
    moved = tmp_path / "laptop" / src.name
    assert rebase_main([str(moved)]) == 0
    assert stored_names(moved) == [str(tmp_path / "laptop" / f"{src.name}.{i}") for i in range(3)]
    assert reads_as(moved, data)
    assert Directory.open(moved).metadata == {"origin": "v1"}


def test_rebase_v1_when_the_old_paths_still_exist(tmp_path: Path) -> None:
    """Copied by hand while the old files stay: before rebase it reads the OLD files, after it the new ones."""
    src, data = make_v1(tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    for i in range(3):  # the old place now holds other bytes
        old = Path(f"{src}.{i}")
        old.write_bytes(bytes(old.stat().st_size))
    copy = tmp_path / "new" / src.name
    with pytest.raises(BlockfsError):
        Directory.open(copy)[:]
    assert rebase_main([str(copy), "--block-size", "7"]) == 0
    assert reads_as(copy, data)


def test_rebase_v2_and_relative_names(tmp_path: Path) -> None:
    src, data = make_v2(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b" / src.name
    before = stored_names(moved)
    assert rebase_main([str(moved)]) == 0
    assert stored_names(moved) == before == ["vol.blockfs.0", "vol.blockfs.1"]
    assert reads_as(moved, data)


def test_rebase_with_a_missing_block_file_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v1(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b" / src.name
    os.unlink(f"{moved}.2")
    before = moved.read_bytes()
    assert rebase_main([str(moved)]) == 1
    assert f"{moved}.2" in capsys.readouterr().err
    assert moved.read_bytes() == before


# ---------------------------------------------------------------------- info
def test_info_fields_v2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v2(tmp_path / "a", metadata={"voxel_um": [1, 1, 2]})
    assert info_main([str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    d = Directory.open(src)
    stored = int(d.index["size"].sum())
    from blockfs_tasks.core.format import VERSION

    assert {k: v for k, v in info.items() if k not in ("checksums", "codec")} == {
        "path": str(src),
        "format_version": VERSION,
        "extent_xyz": [50, 40, 30],
        "shape_zyx": [30, 40, 50],
        "dtype": "uint16",
        "block_size_xyz": [16, 16, 16],
        "compression": "zstd",
        "compression_level": 5,
        "shuffle": 1,
        "loss_bound": "lossless",
        "blocks_present": 24,
        "blocks_total": 24,
        "stored_bytes": stored,
        "raw_bytes": 50 * 40 * 30 * 2,
        "compression_ratio": round(50 * 40 * 30 * 2 / stored, 3),
        "block_files": [f"{src}.0", f"{src}.1"],
        "live_bytes": stored,
        "dead_bytes": 0,
        "commits": 0,
        "metadata": {"voxel_um": [1, 1, 2]},
    }
    assert info_main([str(src)]) == 0
    text = capsys.readouterr().out
    for key in ("format_version", "extent_xyz", "dtype", "blocks_present", "compression_ratio"):
        assert key in text
    assert VERSION in text and "[50, 40, 30]" in text


def test_info_fields_sparse_v1(capsys: pytest.CaptureFixture[str], v1_copy: Callable[[str], Path]) -> None:
    src = v1_copy("v1_uint8_lz4_sparse")
    assert info_main([str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    d = Directory.open(src)
    present = list(d)
    raw = sum(int(np.prod(d.get_block_size(*o))) for o in present)
    assert (info["format_version"], info["dtype"], info["compression"], info["compression_level"]) == (
        "1.0.0", "uint8", "lz4", 3)
    assert info["extent_xyz"] == [97, 65, 33] and info["block_size_xyz"] == [16, 32, 8]
    assert (info["blocks_present"], info["blocks_total"]) == (len(present), 105) and 0 < len(present) < 105
    assert info["raw_bytes"] == raw
    stored = sum(os.path.getsize(f) for f in d.block_filenames)
    assert info["stored_bytes"] == stored
    assert info["compression_ratio"] == round(raw / stored, 3)
    assert info["block_files"] == [f"{src}.{i}" for i in range(3)]


def test_info_console_script(tmp_path: Path) -> None:
    src, _ = make_v1(tmp_path / "a")
    exe = shutil.which("blockfs-info") or str(Path(sys.executable).parent / "blockfs-info")
    result = subprocess.run([exe, str(src)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.strip().splitlines())
    assert lines["format_version"] == "1.0.0"
    assert lines["extent_xyz"] == "[47, 33, 20]" and lines["shape_zyx"] == "[20, 33, 47]"
    assert lines["dtype"] == "int16" and lines["block_size_xyz"] == "[16, 16, 8]"
    assert lines["blocks_present"] == lines["blocks_total"] == "27"
    bad = subprocess.run([exe, str(tmp_path / "nothing.blockfs")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("blockfs-info: error:") and "nothing.blockfs" in bad.stderr


def test_info_on_a_file_that_is_not_blockfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.blockfs"
    bad.write_bytes(b"not a volume at all")
    assert info_main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(bad) in err


# -------------------------------------------------------------------- verify
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_verify_good_volume(tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = MAKERS[version](tmp_path / "a")
    assert verify_main([str(src), "--silent"]) == 0
    out = capsys.readouterr().out
    n = len(Directory.open(src))
    assert f"{n} blocks good, 0 bad" in out and "BAD" not in out


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_verify_names_each_bad_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v2(tmp_path / "a")
    d = Directory.open(src)
    bad = [(16, 16, 0), (32, 0, 16), (48, 32, 16)]
    for x, y, z in bad:
        e = d.index[d.grid.position(x, y, z)]
        _flip(d.block_filenames[int(e["file"]) - 1], int(e["offset"] + e["size"] // 2))
    assert verify_main([str(src), "--silent", "--n-workers", "2"]) == 1
    out = capsys.readouterr().out
    bad_lines = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad_lines) == 3
    for (x, y, z), line in zip(bad, bad_lines, strict=True):
        assert f"({x}, {y}, {z})" in line and "checksum" in line
    assert f"{len(d) - 3} blocks good, 3 bad" in out


def test_verify_missing_and_truncated_block_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v1(tmp_path / "a")
    d = Directory.open(src)
    os.unlink(d.block_filenames[1])  # every block in file 1 is bad
    in_file_1 = [o for o in d if d.index[d.grid.position(*o)]["file"] == 2]
    size0 = os.path.getsize(d.block_filenames[0])
    os.truncate(d.block_filenames[0], size0 - 1)  # the last block of file 0 is cut
    assert verify_main([str(src), "--silent"]) == 1
    out = capsys.readouterr().out
    bad_lines = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad_lines) == len(in_file_1) + 1
    for x, y, z in in_file_1:
        assert any(f"({x}, {y}, {z})" in line and "missing" in line for line in bad_lines)
    assert sum("truncated" in line for line in bad_lines) == 1


def test_verify_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = make_v2(tmp_path / "a")
    assert verify_main([str(src)]) == 0
    captured = capsys.readouterr()
    assert "24/24" in captured.err and "BAD" not in captured.out


@pytest.mark.parametrize("main", [cp_main, mv_main], ids=["cp", "mv"])
def test_cp_mv_of_a_volume_with_an_uncommitted_journal(
    tmp_path: Path, main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A volume whose writer never closed (its blocks live in the journal): the copy must not silently lose them.

    Either the tool refuses (exit 1, naming the journal, nothing touched) or the
    volume at the destination reads exactly like the source.
    """
    (tmp_path / "a").mkdir()
    src = tmp_path / "a" / "vol.blockfs"
    d = Directory(32, 32, 32, np.uint16, src, 16, 16, 16)
    d.create()
    data = _block(3, (16, 16, 16))
    d.write_block(data, 16, 0, 16)
    del d  # the writing process "crashed": no close()
    before = Directory.open(src)[:]
    assert before.any()
    code = main([str(src), str(tmp_path / "b")])
    if code == 1:
        assert "journal" in capsys.readouterr().err
        assert same_array(Directory.open(src)[:], before)
    else:
        assert code == 0
        assert same_array(Directory.open(tmp_path / "b" / "vol.blockfs")[:], before)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ------------------------------------------------------- argument validation
@pytest.mark.parametrize("size", ["0", "-5", "x"])
def test_rebase_refuses_a_bad_block_size_and_changes_nothing(
    tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9 item 1: --block-size 0 used to publish a header-only directory (every block lost) and exit 0."""
    src, data = make_v2(tmp_path / "a")
    before = src.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        rebase_main([str(src), "--block-size", size])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--block-size" in err and "positive integer" in err and "Traceback" not in err
    assert src.read_bytes() == before and reads_as(src, data)


def test_rebase_volume_refuses_a_zero_chunk_size(tmp_path: Path) -> None:
    from blockfs_tasks.core.errors import ConfigurationError
    from blockfs_tasks.core.relocate import rebase_volume

    src, data = make_v1(tmp_path / "a")
    with pytest.raises(ConfigurationError):
        rebase_volume(str(src), 0)
    assert reads_as(src, data)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_wrong_rewritten_directory_is_never_published(tmp_path: Path, version: str) -> None:
    """The guard behind every rewrite: a result that does not decode to the source's index is thrown away."""
    from blockfs_tasks.core.format import read_directory
    from blockfs_tasks.core.relocate import publish_rewritten

    src, data = MAKERS[version](tmp_path / "a")
    before = src.read_bytes()
    with pytest.raises(BlockfsError):
        publish_rewritten(str(src), str(src), lambda md: {**md, "XExtent": md["XExtent"] * 2}, read_directory(str(src)))
    assert src.read_bytes() == before and reads_as(src, data)
    assert [f for f in os.listdir(src.parent) if ".tmp-" in f] == []


@pytest.mark.parametrize(
    "main_name, argv, option",
    [
        ("serve_main", ["VOL", "--port", "-1"], "--port"),
        ("serve_main", ["VOL", "--port", "70000"], "--port"),
        ("serve_main", ["VOL", "--gzip-level", "12"], "--gzip-level"),
        ("pyramid_main", ["VOL", "OUT", "--blocks-per-batch", "0"], "--blocks-per-batch"),
        ("pyramid_main", ["VOL", "OUT", "--n-workers", "0"], "--n-workers"),
        ("pyramid_main", ["VOL", "OUT", "--n-workers", "-2"], "--n-workers"),
        ("precomputed_main", ["VOL", "OUT", "--n-workers", "0"], "--n-workers"),
        ("tif_main", ["--input", "VOL", "--output-pattern", "o_%d.tif", "--n-workers", "0"], "--n-workers"),
        ("jp2k_main", ["--input", "VOL", "--output-pattern", "o_%d.jp2", "--n-workers", "-1"], "--n-workers"),
        ("hdf5_main", ["VOL", "out.h5", "data", "--n-threads", "0"], "--n-threads"),
        ("verify_main", ["VOL", "--n-workers", "0"], "--n-workers"),
    ],
)
def test_bad_numbers_are_one_line_errors(
    tmp_path: Path, main_name: str, argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9 item 13: these printed tracebacks (or were accepted silently)."""
    import blockfs_tasks.cli as cli

    src, _ = make_v2(tmp_path / "a")
    argv = [str(src) if a == "VOL" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        getattr(cli, main_name)(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and option in error_lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_port_from_the_console_script(tmp_path: Path) -> None:
    src, _ = make_v2(tmp_path / "a")
    exe = shutil.which("blockfs-serve") or str(Path(sys.executable).parent / "blockfs-serve")
    result = subprocess.run([exe, str(src), "--port", "70000"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("blockfs-serve: error: argument --port")


def test_make_server_refuses_a_bad_port(tmp_path: Path) -> None:
    from blockfs_tasks.core.errors import ConfigurationError
    from blockfs_tasks.serve import open_precomputed
    from blockfs_tasks.serve.server import make_server

    src, _ = make_v2(tmp_path / "a")
    for port in (-1, 70000):
        with pytest.raises(ConfigurationError, match="65535"):
            make_server(open_precomputed(str(src)), port=port)


def test_cp_refuses_a_volume_with_an_open_writing_session(tmp_path: Path) -> None:
    """A volume being written (session file, per-writer journals) is not copied half-merged."""
    import numpy as np

    from blockfs_tasks.core import Directory
    from blockfs_tasks.core.errors import VolumeBusyError
    from blockfs_tasks.core.relocate import copy_volume

    src = tmp_path / "a" / "v.blockfs"
    src.parent.mkdir()
    d = Directory(64, 64, 64, np.uint8, src, 32, 32, 32)
    d.create()
    d.write_block(np.ones((32, 32, 32), np.uint8), 0, 0, 0)
    with pytest.raises(VolumeBusyError, match="being written by this process"):
        copy_volume(str(src), str(tmp_path / "b"))
    assert not (tmp_path / "b" / "v.blockfs").exists()
    d.close()
    copy_volume(str(src), str(tmp_path / "b"))
    assert Directory.open(tmp_path / "b" / "v.blockfs").read_block(0, 0, 0).sum() == 32**3
