"""Format 1.0.0 (the original blockfs) is read as-is: golden volumes and volumes of tests/v1_writer.py."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from v1_writer import write_v1_volume

from blockfs_tasks.core import Directory, ReadOnlyError

from .helpers import ALL_COMPRESSORS, ALL_DTYPES, V1_CASES, V1_DATA, compressor_param, random_block, same


def _fixture(case: str) -> tuple[Path, np.ndarray, dict]:
    folder = V1_DATA / case
    return (
        folder / "precomputed.blockfs",
        np.load(folder / "expected.npy"),
        json.loads((folder / "case.json").read_text()),
    )


def _check_every_block(d: Directory, expected: np.ndarray) -> None:
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        assert same(d.read_block(x, y, z), expected[z : z + sz, y : y + sy, x : x + sx]), (x, y, z)


# ----------------------------------------------------------------- golden files
def test_both_golden_volumes_are_present() -> None:
    assert V1_CASES == ["v1_uint16_zstd", "v1_uint8_lz4_sparse"]


@pytest.mark.parametrize("case", V1_CASES)
def test_golden_volume_reads_as_expected(case: str) -> None:
    path, expected, meta = _fixture(case)
    d = Directory.open(path)
    assert d.version == "1.0.0"
    assert d.shape == expected.shape == tuple(meta["extent_xyz"][::-1])
    assert d.dtype == expected.dtype == np.dtype(meta["dtype"])
    assert d.grid.block_xyz == tuple(meta["block_xyz"])
    assert d.compression == meta["compression"] and d.compression_level == meta["level"]
    assert same(d[:, :, :], expected)
    _check_every_block(d, expected)


def test_golden_sparse_volume_has_absent_blocks_reading_zeros() -> None:
    path, expected, _ = _fixture("v1_uint8_lz4_sparse")
    d = Directory.open(path)
    absent = [o for o in d.grid.origins() if not d.has_block(*o)]
    assert absent and len(d) == d.grid.n_blocks - len(absent) == len(list(d))
    for x, y, z in absent:
        assert not d.read_block(x, y, z).any()
    # the empty block file of the fixture is listed and harmless
    assert os.path.getsize(d.block_filenames[2]) == 0


@pytest.mark.parametrize("case", V1_CASES)
def test_golden_volume_region_reads(case: str) -> None:
    path, expected, _ = _fixture(case)
    d = Directory.open(path)
    rng = np.random.default_rng(5)
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in expected.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, expected.shape, strict=True)]
        key = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        assert same(d[key], expected[key])


def test_golden_files_are_untouched_by_reading() -> None:
    before = {p: p.stat().st_mtime_ns for p in V1_DATA.rglob("*")}
    for case in V1_CASES:
        d = Directory.open(V1_DATA / case / "precomputed.blockfs")
        d[:, :, :]
        with d:
            pass
    assert {p: p.stat().st_mtime_ns for p in V1_DATA.rglob("*")} == before


@pytest.mark.parametrize("case", V1_CASES)
def test_golden_volume_moved_elsewhere_still_reads(case: str, v1_copy: Callable[[str], Path]) -> None:
    path = v1_copy(case)
    d = Directory.open(path)
    assert all(Path(f).parent == path.parent for f in d.block_filenames)
    assert same(d[:], np.load(path.parent / "expected.npy"))


# ------------------------------------------------------ volumes of v1_writer.py
@pytest.mark.parametrize("compression", [compressor_param(c) for c in ALL_COMPRESSORS])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_v1_every_compressor_and_dtype(tmp_path: Path, dtype: str, compression: str) -> None:
    expected = random_block((21, 18, 27), dtype, (7, len(dtype), len(compression)))
    v = write_v1_volume(tmp_path / "v.blockfs", expected, (8, 8, 8), compression=compression, level=4, n_files=3)
    d = Directory.open(v.path)
    assert (d.version, d.dtype, d.compression, d.compression_level) == ("1.0.0", np.dtype(dtype), compression, 4)
    assert len(d) == d.grid.n_blocks == 4 * 3 * 3
    assert same(d[:, :, :], expected)
    _check_every_block(d, expected)


def test_v1_sparse_including_entries_past_the_end_of_the_directory(tmp_path: Path) -> None:
    expected = random_block((40, 33, 50), "uint16", 11)
    present = {(16, 0, 0), (0, 16, 0), (48, 32, 8), (32, 16, 16)}  # none in the last z layer of blocks
    v = write_v1_volume(
        tmp_path / "v.blockfs", expected, (16, 16, 8), n_files=2, keep=lambda x, y, z: (x, y, z) in present
    )
    d = Directory.open(v.path)
    # The directory file ends at the last written entry: later slots are not even stored.
    assert v.n_entries < d.grid.n_blocks
    header = 16 + int.from_bytes(Path(v.path).read_bytes()[8:12], "little")
    assert os.path.getsize(v.path) == header + v.n_entries * v.entry_size
    assert set(d) == present and len(d) == 4
    want = np.zeros_like(expected)
    for x, y, z in present:
        want[z : z + 8, y : y + 16, x : x + 16] = expected[z : z + 8, y : y + 16, x : x + 16]
    assert same(d[:], want)
    _check_every_block(d, want)
    last = max(d.grid.origins(), key=lambda o: d.grid.position(*o))
    assert not d.has_block(*last) and not d.read_block(*last).any()


def test_v1_empty_volume_has_no_entries_at_all(tmp_path: Path) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((9, 9, 9), np.int16), (4, 4, 4), keep=lambda *o: False)
    assert v.n_entries == 0
    d = Directory.open(v.path)
    assert len(d) == 0 and list(d) == []
    assert same(d[:], np.zeros((9, 9, 9), np.int16))


def test_v1_application_metadata_kept(tmp_path: Path) -> None:
    md = {"voxel_size_um": [1.8, 1.8, 2.0], "source": "stitched", "nested": {"a": [1, {"b": None}]}}
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((4, 4, 4), np.uint8), (4, 4, 4), metadata=md)
    d = Directory.open(v.path)
    assert d.metadata == md
    assert same(d.read_block(0, 0, 0), np.ones((4, 4, 4), np.uint8))


def test_v1_absolute_paths_that_no_longer_exist(tmp_path: Path) -> None:
    """A volume copied off a cluster: its absolute block paths are gone, the files sit beside it."""
    expected = random_block((20, 30, 40), "uint16", 12)
    old = tmp_path / "cluster" / "scratch"
    old.mkdir(parents=True)
    v = write_v1_volume(old / "precomputed.blockfs", expected, (16, 16, 16), n_files=3, absolute_names=True)
    stored = json.loads(Path(v.path).read_bytes()[16:].split(b"}")[0] + b"}")["BlockFilenames"]
    assert all(os.path.isabs(n) and n.startswith(str(old)) for n in stored)
    new = tmp_path / "laptop"
    shutil.copytree(old, new)
    shutil.rmtree(tmp_path / "cluster")
    d = Directory.open(new / "precomputed.blockfs")
    assert d.block_filenames == [str(new / f"precomputed.blockfs.{i}") for i in range(3)]
    assert same(d[:], expected)
    _check_every_block(d, expected)


def test_v1_absolute_paths_that_exist_are_used(tmp_path: Path) -> None:
    """When the stored absolute paths exist, they are read (the original's behaviour)."""
    expected = random_block((8, 8, 8), "uint8", 13)
    (tmp_path / "a").mkdir()
    v = write_v1_volume(tmp_path / "a" / "v.blockfs", expected, (8, 8, 8), n_files=1)
    (tmp_path / "b").mkdir()
    shutil.copy(v.path, tmp_path / "b" / "v.blockfs")  # only the directory file moves
    d = Directory.open(tmp_path / "b" / "v.blockfs")
    assert d.block_filenames == [str(tmp_path / "a" / "v.blockfs.0")]
    assert same(d[:], expected)


def test_v1_custom_strides(tmp_path: Path) -> None:
    """The entry strides come from the metadata (here z fastest), not from an assumed layout."""
    expected = random_block((17, 9, 13), "int32", 14)
    gy, gz = 3, 5  # blocks along y (9/4) and z (17/4), rounded up
    v = write_v1_volume(
        tmp_path / "v.blockfs", expected, (4, 4, 4), n_files=2, strides_xyz=(gz * gy, gz, 1), order_seed=3
    )
    assert v.strides_xyz == (15, 5, 1)
    d = Directory.open(v.path)
    assert same(d[:], expected)
    _check_every_block(d, expected)


@pytest.mark.parametrize("edge", [1, 63])
def test_v1_wide_entries(tmp_path: Path, edge: int) -> None:
    """Entries of several byte widths decode (offset and size bits straddle bytes)."""
    expected = random_block((edge, 64, 64), "float64", 15)
    v = write_v1_volume(tmp_path / "v.blockfs", expected, (64, 64, 32), n_files=1)
    assert v.entry_size >= 4
    assert same(Directory.open(v.path)[:], expected)


def test_v1_is_read_only(tmp_path: Path) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((4, 4, 4), np.uint8), (4, 4, 4))
    with pytest.raises(ReadOnlyError, match=r"1\.0\.0.*read-only") as e:
        Directory.open(v.path, "r+")
    assert v.path in str(e.value)
    d = Directory.open(v.path)
    with pytest.raises(ReadOnlyError, match="read-only"):
        d.write_block(np.ones((4, 4, 4), np.uint8), 0, 0, 0)
    assert not d.writable


def test_v1_pickled_directory_reads_in_another_process(tmp_path: Path, v1_copy: Callable[[str], Path]) -> None:
    import multiprocessing

    path = v1_copy("v1_uint16_zstd")
    d = Directory.open(path)
    clone = pickle.loads(pickle.dumps(d))
    expected = np.load(path.parent / "expected.npy")
    assert clone.version == "1.0.0" and same(clone[:], expected)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_read_block_in_child, (d, 32, 64, 32))
    assert same(got, expected[32:64, 64:96, 32:64])


def _read_block_in_child(d: Directory, x: int, y: int, z: int) -> np.ndarray:
    return d.read_block(x, y, z)
