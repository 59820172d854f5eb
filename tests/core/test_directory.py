"""The current format (2.1.0) through the Directory API: round trips, reads, iteration, reopening, pickling."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import struct
import threading
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from blockfs_tasks.core import BlockShapeError, Compression, Directory, OutOfBoundsError, ReadOnlyError
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.blockfile import journal_files

from .helpers import ALL_COMPRESSORS, ALL_DTYPES, compressor_param, random_block, same


def write_volume(path: Path, data: np.ndarray, block_xyz: tuple[int, int, int], **kwargs: object) -> Directory:
    """Create a volume holding ``data`` (z, y, x), one write_block per block, and close it."""
    ez, ey, ex = data.shape
    d = Directory(ex, ey, ez, data.dtype, path, *block_xyz, **kwargs)  # type: ignore[arg-type]  # kwargs: Directory's keyword options
    d.create()
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        d.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    d.close()
    return d


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Directory, np.ndarray]:
    """A 37 x 50 x 61 (z, y, x) int16 volume in 16 x 16 x 8 (x, y, z) blocks: every axis has edge blocks."""
    data = random_block((37, 50, 61), "int16", 42)
    path = tmp_path_factory.mktemp("vol") / "vol.blockfs"
    write_volume(path, data, (16, 16, 8))
    return Directory.open(path), data


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("compression", [compressor_param(c) for c in ALL_COMPRESSORS])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_round_trip_every_dtype_and_compressor(tmp_path: Path, dtype: str, compression: str) -> None:
    data = random_block((19, 23, 29), dtype, (3, len(dtype), len(compression)))  # no axis a multiple of 8
    write_volume(tmp_path / "v.blockfs", data, (8, 8, 8), compression=compression, compression_level=7)
    d = Directory.open(tmp_path / "v.blockfs")
    assert (d.version, d.dtype, d.compression, d.compression_level) == (fmt.VERSION, np.dtype(dtype), compression, 7)
    assert d.shape == (19, 23, 29) and len(d) == d.grid.n_blocks == 3 * 3 * 4
    assert same(d[:, :, :], data)
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        assert same(d.read_block(x, y, z), data[z : z + sz, y : y + sy, x : x + sx])


def test_edge_blocks_have_truncated_shapes(volume: tuple[Directory, np.ndarray]) -> None:
    d, data = volume
    assert d.shape == (37, 50, 61)
    assert (d.x_extent, d.y_extent, d.z_extent) == (61, 50, 37)
    assert (d.x_block_size, d.y_block_size, d.z_block_size) == (16, 16, 8)
    assert d.get_block_size(0, 0, 0) == (8, 16, 16)
    assert d.get_block_size(48, 48, 32) == (5, 2, 13)
    assert d.get_block_size(48, 0, 0) == (8, 16, 13)
    assert d.read_block(48, 48, 32).shape == (5, 2, 13)
    assert same(d.read_block(48, 48, 32), data[32:, 48:, 48:])


def test_shuffle_off_and_level_zero(tmp_path: Path) -> None:
    data = random_block((10, 10, 10), "uint32", 4)
    write_volume(tmp_path / "v.blockfs", data, (4, 4, 4), compression="lz4", compression_level=0, shuffle=False)
    d = Directory.open(tmp_path / "v.blockfs")
    assert d.spec.codec.shuffle == 0 and d.compression_level == 0
    assert same(d[:], data)


def test_compression_enum_accepted(tmp_path: Path) -> None:
    data = random_block((8, 8, 8), "uint16", 5)
    write_volume(tmp_path / "v.blockfs", data, (8, 8, 8), compression=Compression.zstd)
    d = Directory.open(tmp_path / "v.blockfs")
    assert d.compression == "zstd" and same(d[:], data)
    md = _read_directory_file(tmp_path / "v.blockfs")[0]
    assert md["Codec"]["cname"] == "zstd"


def test_unwritten_blocks_read_zeros(tmp_path: Path) -> None:
    d = Directory(40, 30, 20, np.float32, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    block = random_block((16, 14, 16), "float32", 6)
    d.write_block(block, 16, 16, 0)
    d.close()
    d = Directory.open(tmp_path / "v.blockfs")
    assert list(d) == [(16, 16, 0)] and len(d) == 1
    assert not d.has_block(0, 0, 0) and d.has_block(16, 16, 0)
    assert same(d.read_block(32, 16, 16), np.zeros((4, 14, 8), np.float32))
    want = np.zeros((20, 30, 40), np.float32)
    want[:16, 16:, 16:32] = block
    assert same(d[:], want)


# --------------------------------------------------------------- region reads
def test_random_region_reads(volume: tuple[Directory, np.ndarray]) -> None:
    d, data = volume
    rng = np.random.default_rng(1)
    for _ in range(40):
        key = []
        for n in data.shape:
            a, b = sorted(int(v) for v in rng.integers(0, n + 1, 2))
            key.append(slice(a, b))
        key = tuple(key)
        assert same(d[key], data[key]), key


@pytest.mark.parametrize(
    "key",
    [
        np.s_[5],
        np.s_[-1],
        np.s_[-37],
        np.s_[3, -2],
        np.s_[3, 4, 5],
        np.s_[np.int64(-3), :, np.int32(60)],
        np.s_[:, -20:-3, 7],
        np.s_[-100:],
        np.s_[::3, 1::7, 2:50:5],
        np.s_[..., 17],
        np.s_[2, ...],
        np.s_[1:2, ..., 3:60:9],
        np.s_[...],
        np.s_[30:200, 40:1000],
        np.s_[10:10],
        np.s_[20:5, :, :],
        np.s_[:, :, 60:],
    ],
)
def test_numpy_indexing(volume: tuple[Directory, np.ndarray], key: object) -> None:
    d, data = volume
    got, want = d[key], data[key]
    assert np.shape(got) == np.shape(want)
    assert same(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("key", [np.s_[37], np.s_[-38], np.s_[0, 50], np.s_[0, 0, 61], np.s_[0, 0, 0, 0]])
def test_out_of_range_indices(volume: tuple[Directory, np.ndarray], key: object) -> None:
    d, _ = volume
    with pytest.raises(OutOfBoundsError):
        d[key]


@pytest.mark.parametrize("key", [np.s_[::-1], np.s_[:, ::0], np.s_[[1, 2]], np.s_["a"]])
def test_unsupported_indices_are_clear_errors(volume: tuple[Directory, np.ndarray], key: object) -> None:
    d, _ = volume
    with pytest.raises((OutOfBoundsError, ValueError)):
        d[key]


def test_region_read_reads_only_the_blocks_it_needs(tmp_path: Path) -> None:
    """A region read must not touch blocks outside the region: delete their block file to prove it."""
    data = random_block((32, 32, 32), "uint8", 7)
    d = Directory(32, 32, 32, np.uint8, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    for x, y, z in d.grid.origins():  # the first block goes to another block file, written by a child
        if (x, y, z) != (0, 0, 0):
            d.write_block(data[z : z + 16, y : y + 16, x : x + 16], x, y, z)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=d.write_block, args=(data[:16, :16, :16], 0, 0, 0))
    p.start()
    p.join()
    d.close()
    d = Directory.open(tmp_path / "v.blockfs")
    assert len(d.block_filenames) == 2
    lone = d.block_filenames[d.index[0]["file"] - 1]
    os.unlink(lone)
    assert same(d[16:, 3:30, 5:], data[16:, 3:30, 5:])
    assert same(d[:, 16:, :], data[:, 16:, :])


# ---------------------------------------------------- iteration, len, metadata
def test_iteration_and_len(tmp_path: Path) -> None:
    d = Directory(50, 40, 30, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    chosen = [(48, 0, 0), (0, 32, 16), (16, 16, 0), (32, 0, 16)]
    for x, y, z in chosen:
        d.write_block(np.full(d.get_block_size(x, y, z), x + y + z, np.uint16), x, y, z)
    d.close()
    r = Directory.open(tmp_path / "v.blockfs")
    assert len(r) == 4
    assert list(r) == sorted(chosen, key=lambda o: r.grid.position(*o))  # position order, x fastest
    assert [int(r.read_block(*o)[0, 0, 0]) for o in r] == [sum(o) for o in r]


def test_len_and_iteration_while_writing(tmp_path: Path) -> None:
    """A writing session sees its own blocks in len() and iteration, as it does in has_block()."""
    d = Directory(32, 32, 32, np.uint8, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    assert len(d) == 0 and list(d) == []
    d.write_block(np.ones((16, 16, 16), np.uint8), 16, 0, 0)
    assert list(d) == [(16, 0, 0)]
    assert len(d) == 1
    d.write_block(np.ones((16, 16, 16), np.uint8), 0, 16, 16)
    assert len(d) == 2 and list(d) == [(16, 0, 0), (0, 16, 16)]
    assert d.has_block(0, 16, 16)
    d.close()
    assert len(Directory.open(tmp_path / "v.blockfs")) == 2


def test_metadata_kept(tmp_path: Path) -> None:
    md = {"voxel_size_um": [1.8, 1.8, 2.0], "channel": "488", "nested": {"list": [1, None, True]}, "ünïcode": "µm"}
    d = Directory(8, 8, 8, np.uint8, tmp_path / "v.blockfs", metadata=md)
    d.create()
    d.close()
    r = Directory.open(tmp_path / "v.blockfs")
    assert r.metadata == md
    assert r.metadata is not md


def test_reading_a_new_volume_before_close(tmp_path: Path) -> None:
    d = Directory(20, 20, 20, np.int8, tmp_path / "v.blockfs", 8, 8, 8)
    d.create()
    block = random_block((8, 8, 8), "int8", 8)
    d.write_block(block, 8, 8, 8)
    assert d.has_block(8, 8, 8) and same(d.read_block(8, 8, 8), block)
    assert same(d[8:16, 8:16, 8:16], block)
    assert not d.read_block(0, 0, 0).any()
    d.close()


def test_overwriting_a_block_keeps_the_newest(tmp_path: Path) -> None:
    d = Directory(16, 16, 16, np.uint8, tmp_path / "v.blockfs", 8, 8, 8)
    d.create()
    for value in (1, 2, 3):
        d.write_block(np.full((8, 8, 8), value, np.uint8), 8, 0, 8)
    assert int(d.read_block(8, 0, 8)[0, 0, 0]) == 3
    d.close()
    assert int(Directory.open(tmp_path / "v.blockfs").read_block(8, 0, 8).max()) == 3


# ------------------------------------------------- context manager, reopening
def test_context_manager_closes_and_commits(tmp_path: Path) -> None:
    block = random_block((8, 8, 8), "uint16", 9)
    with Directory(16, 16, 16, np.uint16, tmp_path / "v.blockfs", 8, 8, 8) as d:
        d.create()
        d.write_block(block, 8, 8, 8)
    assert not d.writable
    assert not journal_files(str(tmp_path / "v.blockfs"))
    with pytest.raises(ReadOnlyError, match="closed"):
        d.write_block(block, 0, 0, 0)
    with Directory.open(tmp_path / "v.blockfs") as r:
        assert same(r.read_block(8, 8, 8), block) and len(r) == 1
    assert same(r.read_block(8, 8, 8), block)  # still readable after the with block


def test_context_manager_on_error_does_not_commit_as_closed(tmp_path: Path) -> None:
    """An exception inside ``with`` leaves the session open (journal kept): blocks are not lost."""
    block = random_block((8, 8, 8), "uint16", 10)
    with pytest.raises(RuntimeError, match="boom"):
        with Directory(16, 16, 16, np.uint16, tmp_path / "v.blockfs", 8, 8, 8) as d:
            d.create()
            d.write_block(block, 0, 8, 0)
            raise RuntimeError("boom")
    assert same(Directory.open(tmp_path / "v.blockfs").read_block(0, 8, 0), block)


def test_reopen_r_plus_to_add_blocks(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    first = random_block((8, 8, 8), "uint16", 11)
    second = random_block((8, 8, 8), "uint16", 12)
    d = Directory(16, 16, 16, np.uint16, path, 8, 8, 8, metadata={"k": 1})
    d.create()
    d.write_block(first, 0, 0, 0)
    d.write_block(first, 8, 8, 8)
    d.close()
    with pytest.raises(ReadOnlyError):
        Directory.open(path).write_block(second, 8, 0, 0)
    d = Directory.open(path, "r+")
    assert d.writable and d.metadata == {"k": 1}
    d.write_block(second, 8, 0, 0)
    d.write_block(second, 8, 8, 8)  # replaces a block of the first session
    d.close()
    r = Directory.open(path)
    assert set(r) == {(0, 0, 0), (8, 0, 0), (8, 8, 8)}
    assert same(r.read_block(0, 0, 0), first)
    assert same(r.read_block(8, 0, 0), second) and same(r.read_block(8, 8, 8), second)
    assert sorted(os.listdir(tmp_path)) == ["v.blockfs", "v.blockfs.0", "v.blockfs.1"]


def test_open_rejects_an_unknown_mode(tmp_path: Path) -> None:
    write_volume(tmp_path / "v.blockfs", np.zeros((4, 4, 4), np.uint8), (4, 4, 4))
    with pytest.raises(ValueError, match="'w'.*'r', 'r\\+'"):
        Directory.open(tmp_path / "v.blockfs", "w")


def test_create_replaces_an_existing_volume(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_volume(path, np.ones((16, 16, 16), np.uint8), (8, 8, 8))
    d = Directory(16, 16, 16, np.uint8, path, 8, 8, 8)
    d.create()
    d.close()
    assert len(Directory.open(path)) == 0
    assert sorted(os.listdir(tmp_path)) == ["v.blockfs"]


# ------------------------------------------------------------------- pickling
def test_pickling_a_reading_directory(volume: tuple[Directory, np.ndarray]) -> None:
    d, data = volume
    clone = pickle.loads(pickle.dumps(d))
    assert clone.shape == d.shape and clone.dtype == d.dtype and clone.metadata == d.metadata
    assert same(clone[3:30, 5:45, 7:55], data[3:30, 5:45, 7:55])
    assert len(pickle.dumps(d)) < 4096  # the spec and path, not the index or open files


def test_pickled_writing_directory_writes_from_a_spawned_process(tmp_path: Path) -> None:
    d = Directory(32, 32, 32, np.int64, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(_write_seeded, [(d, x, y, z) for x, y, z in d.grid.origins()])
    d.close()
    r = Directory.open(tmp_path / "v.blockfs")
    assert len(r) == 8
    for x, y, z in r.grid.origins():
        assert same(r.read_block(x, y, z), random_block((16, 16, 16), "int64", (x, y, z)))


def _write_seeded(d: Directory, x: int, y: int, z: int) -> None:
    d.write_block(random_block(d.get_block_size(x, y, z), d.dtype, (x, y, z)), x, y, z)


# ------------------------------------------------------------- on-disk format
def _read_directory_file(path: Path) -> tuple[dict, np.ndarray]:
    """Parse a 2.1.0 directory file from the spec (format.py's docstring), independently."""
    raw = path.read_bytes()
    magic, m, dpos = struct.unpack_from("<8sII", raw)
    assert magic == b"BlockFS\0" and m % 8 == 0
    assert struct.unpack_from("<I", raw, 16 + m)[0] == google_crc32c.value(raw[: 16 + m])  # header + metadata
    md = json.loads(raw[16 : 16 + m].decode("utf-8"))
    index = np.frombuffer(raw[dpos:], np.dtype([("offset", "<u8"), ("size", "<u4"), ("file", "<u4"), ("crc", "<u4")]))
    per_page = md["IndexPageEntries"]
    pages = -(-len(index) // per_page)
    assert dpos == (20 + m + 4 * pages + 7) // 8 * 8
    for p in range(pages):  # each page checks alone
        page_crc = struct.unpack_from("<I", raw, 20 + m + 4 * p)[0]
        assert page_crc == google_crc32c.value(index[p * per_page : (p + 1) * per_page].tobytes())
    return md, index


def test_directory_file_layout_matches_the_spec(tmp_path: Path) -> None:
    data = random_block((20, 20, 20), "uint16", 13)
    d = write_volume(tmp_path / "v.blockfs", data, (8, 8, 8), compression="lz4", compression_level=2,
                     metadata={"app": 1})
    md, index = _read_directory_file(tmp_path / "v.blockfs")
    assert md["Version"] == "2.1.0"
    assert (md["XExtent"], md["YExtent"], md["ZExtent"]) == (20, 20, 20)
    assert (md["XBlockSize"], md["YBlockSize"], md["ZBlockSize"]) == (8, 8, 8)
    assert md["DType"] == "uint16"
    assert md["Codec"] == {"id": "blosc", "cname": "lz4", "clevel": 2, "shuffle": 1}
    assert md["Metadata"] == {"app": 1}
    assert md["BlockFiles"] == ["v.blockfs.0"]  # relative: a plain mv of the folder keeps the volume
    assert len(index) == 27
    blocks = (tmp_path / "v.blockfs.0").read_bytes()
    for position, (x, y, z) in enumerate(d.grid.origins()):
        e = index[position]
        assert e["file"] == 1
        frame = blocks[e["offset"] : e["offset"] + e["size"]]
        assert google_crc32c.value(frame) == e["crc"]
        sz, sy, sx = d.get_block_size(x, y, z)
        from numcodecs import Blosc

        got = np.frombuffer(Blosc().decode(frame), np.uint16).reshape(sz, sy, sx)
        assert same(got, data[z : z + sz, y : y + sy, x : x + sx])


def test_plain_mv_of_the_folder_keeps_the_volume(tmp_path: Path) -> None:
    data = random_block((9, 9, 9), "float64", 14)
    (tmp_path / "a").mkdir()
    write_volume(tmp_path / "a" / "v.blockfs", data, (4, 4, 4))
    os.rename(tmp_path / "a", tmp_path / "b")
    assert same(Directory.open(tmp_path / "b" / "v.blockfs")[:], data)
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    shutil.rmtree(tmp_path / "b")
    assert same(Directory.open(tmp_path / "c" / "v.blockfs")[:], data)


def test_relative_path_and_pathlike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_volume(Path("rel.blockfs"), np.ones((4, 4, 4), np.uint8), (4, 4, 4))
    d = Directory.open("rel.blockfs")
    assert d.directory_filename == str(tmp_path / "rel.blockfs")
    monkeypatch.chdir("/")
    assert same(d[:], np.ones((4, 4, 4), np.uint8))


# ------------------------------------------------- reading while writing
def test_region_reads_while_the_session_writes(tmp_path: Path) -> None:
    """Region reads (threaded) in the writing process, interleaved with writes, never fail or go stale.

    Each read after a write makes the reading threads catch up with the journal
    at the same moment; a long journal (3000 entries) widens that moment.
    """
    d = Directory(64, 64, 64, np.uint8, tmp_path / "v.blockfs", 8, 8, 8, compression="lz4", compression_level=1)
    d.create()
    origins = list(d.grid.origins())
    want = np.zeros(d.shape, np.uint8)
    d.write_blocks(((np.zeros((8, 8, 8), np.uint8), *origins[i % 512]) for i in range(3000)), n_threads=2)
    errors: list[str] = []
    for i in range(60):
        x, y, z = origins[(i * 7) % 128]
        block = np.full((8, 8, 8), i + 1, np.uint8)
        d.write_block(block, x, y, z)
        want[z : z + 8, y : y + 8, x : x + 8] = block
        try:
            if not same(d[0:16, :, :], want[0:16]):
                errors.append(f"stale read after write {i}")
        except Exception as e:  # collected, reported below
            errors.append(repr(e))
    d.close()
    assert not errors, f"{len(errors)} failed reads of 60, first: {errors[0]}"


def test_concurrent_readers_of_a_closed_volume(volume: tuple[Directory, np.ndarray]) -> None:
    d, data = volume
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(10):
                z0 = int(rng.integers(0, 30))
                assert same(d[z0 : z0 + 7, 3:47, :], data[z0 : z0 + 7, 3:47, :])
        except BaseException as e:  # collected, reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_read_block_into_a_reused_buffer(tmp_path: Path) -> None:
    data = np.arange(20 * 24 * 28, dtype=np.uint16).reshape(20, 24, 28)
    d = Directory(28, 24, 20, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.write_block(data[:16, :16, :16], 0, 0, 0)
    d.close()
    d = Directory.open(tmp_path / "v.blockfs")
    buf = np.full((16, 16, 16), 7, np.uint16)
    assert d.read_block(0, 0, 0, out=buf) is buf
    np.testing.assert_array_equal(buf, data[:16, :16, :16])
    d.read_block(16, 0, 0, out=np.empty((16, 16, 12), np.uint16))  # absent: zeros
    assert not d.read_block(16, 0, 0, out=np.ones((16, 16, 12), np.uint16)).any()
    with pytest.raises(BlockShapeError, match="out="):
        d.read_block(0, 0, 0, out=np.empty((16, 16, 12), np.uint16))
    np.testing.assert_array_equal(d[:16, :16, :16], data[:16, :16, :16])
    assert not d[16:, 16:, 16:].any()


# ------------------------------------------------------- older 2.x volumes
def test_a_2_0_0_volume_takes_blocks_and_is_published_as_the_current_format(tmp_path: Path) -> None:
    """open("r+") of a 2.0.0 volume (the golden one): its blocks stay, the new one is added, close() writes 2.1.0."""
    golden = Path(__file__).resolve().parent.parent / "data" / "blockfs-v2.0.0" / "v2_uint16_zstd_live"
    folder = tmp_path / "v"
    shutil.copytree(golden, folder)
    expected = np.load(folder / "expected.npy")
    path = folder / "precomputed.blockfs"
    d = Directory.open(path, "r+")
    assert d.version == "2.0.0"
    x, y, z = list(d.grid.origins())[-1]
    new = random_block(d.get_block_size(x, y, z), expected.dtype, 15)
    d.write_block(new, x, y, z)
    d.close()
    r = Directory.open(path)
    assert r.version == fmt.VERSION
    sz, sy, sx = new.shape
    expected[z : z + sz, y : y + sy, x : x + sx] = new
    assert same(r[:, :, :], expected)


def test_bit_shuffle_volume_round_trip(tmp_path: Path) -> None:
    data = np.random.default_rng(5).normal(size=(9, 10, 11)).astype(np.float32)
    write_volume(tmp_path / "v.blockfs", data, (4, 4, 4), shuffle=2)
    d = Directory.open(tmp_path / "v.blockfs")
    assert d.spec.codec.to_dict() == {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2}
    assert d[:, :, :].tobytes() == data.tobytes()
