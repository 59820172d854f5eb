"""Bad input: each gets an error of the right class whose message names the file, block and expectation."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from v1_writer import write_v1_volume

from blockfs_tasks.core import (
    BlockDTypeError,
    BlockfsError,
    BlockShapeError,
    ChecksumError,
    ConfigurationError,
    Directory,
    FormatError,
    MissingFileError,
    OutOfBoundsError,
    ReadOnlyError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.errors import CorruptIndexError

from .helpers import TESTS, random_block, same

V2_DATA = TESTS / "data" / "blockfs-v2.0.0"


@pytest.fixture
def live(tmp_path: Path) -> Directory:
    """A writable 40 x 30 x 20 (x, y, z) uint16 volume in 16^3 blocks, one block written."""
    d = Directory(40, 30, 20, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.write_block(np.full((16, 16, 16), 7, np.uint16), 0, 0, 0)
    return d


@pytest.fixture
def closed(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A closed 2.0.0 volume with 8 blocks in one block file; returns its path and data."""
    data = random_block((16, 16, 16), "uint16", 1)
    d = Directory(16, 16, 16, np.uint16, tmp_path / "c.blockfs", 8, 8, 8)
    d.create()
    for x, y, z in d.grid.origins():
        d.write_block(data[z : z + 8, y : y + 8, x : x + 8], x, y, z)
    d.close()
    return tmp_path / "c.blockfs", data


def test_every_error_is_a_blockfs_error_and_a_builtin() -> None:
    pairs = [
        (FormatError, ValueError), (UnsupportedVersionError, FormatError), (BlockShapeError, ValueError),
        (BlockDTypeError, TypeError), (OutOfBoundsError, IndexError), (ReadOnlyError, PermissionError),
        (MissingFileError, FileNotFoundError), (TruncatedFileError, FormatError), (ChecksumError, ValueError),
        (ConfigurationError, ValueError),
    ]
    for cls, builtin in pairs:
        assert issubclass(cls, BlockfsError) and issubclass(cls, builtin), cls


# ---------------------------------------------------------------- bad blocks
@pytest.mark.parametrize(
    "shape, origin",
    [((16, 16, 15), (0, 0, 0)), ((16, 16), (0, 0, 0)), ((16, 16, 16), (32, 16, 0)), ((4, 14, 8), (32, 16, 0))],
)
def test_wrong_block_shape(live: Directory, shape: tuple, origin: tuple) -> None:
    x, y, z = origin
    expected = live.get_block_size(x, y, z)
    with pytest.raises(BlockShapeError) as e:
        live.write_block(np.zeros(shape, np.uint16), x, y, z)
    msg = str(e.value)
    assert live.directory_filename in msg
    assert f"({x}, {y}, {z})" in msg
    assert str(expected) in msg and str(shape) in msg


def test_edge_block_of_the_right_shape_is_accepted(live: Directory) -> None:
    live.write_block(np.ones((4, 14, 8), np.uint16), 32, 16, 16)
    assert same(live.read_block(32, 16, 16), np.ones((4, 14, 8), np.uint16))


@pytest.mark.parametrize(
    "block",
    [
        np.full((16, 16, 16), 1.5, np.float64),
        np.zeros((16, 16, 16), np.float32),  # even integral floats: a float dtype is not storable as uint16
        np.full((16, 16, 16), 70000, np.int64),
        np.full((16, 16, 16), -1, np.int64),
        np.full((16, 16, 16), -1, np.int8),
        np.full((16, 16, 16), 2**40, np.uint64),
        np.zeros((16, 16, 16), np.complex64),
    ],
    ids=["float64", "float32", "int64-too-big", "int64-negative", "int8-negative", "uint64-too-big", "complex"],
)
def test_lossy_dtype_is_refused(live: Directory, block: np.ndarray) -> None:
    with pytest.raises(BlockDTypeError) as e:
        live.write_block(block, 16, 0, 0)
    msg = str(e.value)
    assert live.directory_filename in msg and "(16, 0, 0)" in msg
    assert block.dtype.name in msg and "uint16" in msg
    assert not live.has_block(16, 0, 0)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint64", "int8", "uint8", "bool"])
def test_wider_or_other_integer_blocks_whose_values_fit_are_accepted(live: Directory, dtype: str) -> None:
    values = np.random.default_rng(0).integers(0, 2 if dtype == "bool" else 100, (16, 16, 16))
    block = values.astype(dtype)
    if dtype == "int64":
        block[0, 0, 0] = 65535  # the top of uint16 fits
    live.write_block(block, 16, 0, 0)
    assert same(live.read_block(16, 0, 0), block.astype(np.uint16))


def test_big_endian_and_non_contiguous_blocks(live: Directory) -> None:
    big = np.arange(16**3, dtype=">u2").reshape(16, 16, 16)
    live.write_block(big, 16, 0, 0)
    assert same(live.read_block(16, 0, 0), big.astype("<u2"))
    strided = np.arange(32**3, dtype=np.uint16).reshape(32, 32, 32)[::2, ::2, ::2]
    live.write_block(strided, 0, 0, 0)
    assert same(live.read_block(0, 0, 0), np.ascontiguousarray(strided))
    fortran = np.asfortranarray(np.arange(4 * 14 * 16, dtype=np.uint16).reshape(4, 14, 16))
    live.write_block(fortran, 0, 16, 16)
    assert same(live.read_block(0, 16, 16), np.ascontiguousarray(fortran))


def test_float_volume_refuses_float64_and_big_ints(tmp_path: Path) -> None:
    d = Directory(8, 8, 8, np.float32, tmp_path / "f.blockfs", 8, 8, 8)
    d.create()
    with pytest.raises(BlockDTypeError, match="float64.*float32"):
        d.write_block(np.zeros((8, 8, 8), np.float64), 0, 0, 0)
    with pytest.raises(BlockDTypeError, match="int64.*float32"):
        d.write_block(np.zeros((8, 8, 8), np.int64), 0, 0, 0)
    d.write_block(np.full((8, 8, 8), 3, np.int16), 0, 0, 0)  # exact in float32
    assert same(d.read_block(0, 0, 0), np.full((8, 8, 8), 3, np.float32))
    d.close()


# ------------------------------------------------------------- coordinates
@pytest.mark.parametrize(
    "origin, axis, what",
    [
        ((40, 0, 0), "x", "outside the volume"),
        ((0, 32, 0), "y", "outside the volume"),
        ((0, 0, -16), "z", "outside the volume"),
        ((8, 0, 0), "x", "off the block grid"),
        ((0, 1, 0), "y", "off the block grid"),
        ((0, 0, 15), "z", "off the block grid"),
    ],
)
def test_bad_coordinates(live: Directory, origin: tuple, axis: str, what: str) -> None:
    x, y, z = origin
    value = origin["xyz".index(axis)]
    pattern = rf"{axis}={value} is {what}"
    with pytest.raises(OutOfBoundsError, match=pattern):
        live.write_block(np.zeros((16, 16, 16), np.uint16), x, y, z)
    with pytest.raises(OutOfBoundsError, match=pattern):
        live.read_block(x, y, z)
    with pytest.raises(OutOfBoundsError, match=pattern):
        live.has_block(x, y, z)
    with pytest.raises(OutOfBoundsError, match=pattern):
        live.get_block_size(x, y, z)


# ---------------------------------------------------------- closed / read-only
def test_writing_to_a_closed_volume(live: Directory) -> None:
    live.close()
    with pytest.raises(ReadOnlyError, match=re.escape(live.directory_filename) + ".*closed"):
        live.write_block(np.zeros((16, 16, 16), np.uint16), 16, 0, 0)
    with pytest.raises(ReadOnlyError):
        live.write_blocks([(np.zeros((16, 16, 16), np.uint16), 16, 0, 0)], n_threads=2)
    live.close()  # closing twice is harmless
    assert same(Directory.open(live.directory_filename).read_block(0, 0, 0), np.full((16, 16, 16), 7, np.uint16))


def test_writing_to_a_read_only_volume(closed: tuple[Path, np.ndarray]) -> None:
    path, _ = closed
    d = Directory.open(path)
    with pytest.raises(ReadOnlyError, match=re.escape(str(path)) + ".*read-only"):
        d.write_block(np.zeros((8, 8, 8), np.uint16), 0, 0, 0)
    with pytest.raises(ReadOnlyError):
        d.start_writer_processes()


def test_writing_before_create(tmp_path: Path) -> None:
    d = Directory(8, 8, 8, np.uint8, tmp_path / "n.blockfs")
    with pytest.raises(ReadOnlyError, match="not created"):
        d.write_block(np.zeros((8, 8, 8), np.uint8), 0, 0, 0)
    assert not os.path.exists(tmp_path / "n.blockfs")


# ----------------------------------------------------------- bad directories
def test_not_a_blockfs_file(tmp_path: Path) -> None:
    bad = tmp_path / "image.tif"
    bad.write_bytes(b"II*\x00" + bytes(200))
    with pytest.raises(FormatError) as e:
        Directory.open(bad)
    assert str(bad) in str(e.value) and "BlockFS" in str(e.value) and "not a blockfs" in str(e.value)


def test_empty_or_tiny_file(tmp_path: Path) -> None:
    for size in (0, 7, 15):
        bad = tmp_path / f"tiny{size}.blockfs"
        bad.write_bytes(b"BlockFS\0\x10\x00\x00"[:size])
        with pytest.raises(TruncatedFileError, match=re.escape(str(bad))):
            Directory.open(bad)


def test_missing_directory_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=re.escape(str(tmp_path / "nope.blockfs"))):
        Directory.open(tmp_path / "nope.blockfs")


def _rewrite_md(path: Path, change: dict, drop: tuple[str, ...] = ()) -> None:
    """Change metadata keys behind the header checksum (recomputed), as a buggy writer would."""

    def update(md: dict) -> dict:
        md.update(change)
        for key in drop:
            del md[key]
        return md

    fmt.rewrite_metadata(str(path), str(path), update)


@pytest.mark.parametrize("version", ["3.0.0", "2.2.0", "0.9", None, 2])
def test_unknown_format_version(closed: tuple[Path, np.ndarray], version: object) -> None:
    path, _ = closed
    _rewrite_md(path, {"Version": version})
    with pytest.raises(UnsupportedVersionError) as e:
        Directory.open(path)
    assert str(path) in str(e.value) and repr(version) in str(e.value)
    assert "1.0.0" in str(e.value) and "2.0.0" in str(e.value) and "2.1.0" in str(e.value)


def test_metadata_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.blockfs"
    bad.write_bytes(b"BlockFS\0" + struct.pack("<II", 8, 24) + b"{notjson")
    with pytest.raises(FormatError, match=re.escape(str(bad)) + ".*JSON"):
        Directory.open(bad)


def test_metadata_missing_a_key(closed: tuple[Path, np.ndarray]) -> None:
    path, _ = closed
    _rewrite_md(path, {}, drop=("DType",))
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*'DType'"):
        Directory.open(path)


@pytest.mark.parametrize("cut", [1, 20, 100, "metadata"])
def test_truncated_directory(closed: tuple[Path, np.ndarray], cut: object) -> None:
    path, _ = closed
    raw = path.read_bytes()
    keep = 40 if cut == "metadata" else len(raw) - int(cut)
    path.write_bytes(raw[:keep])
    with pytest.raises(TruncatedFileError) as e:
        Directory.open(path)
    msg = str(e.value)
    assert str(path) in msg
    if cut != "metadata":
        assert f"{keep} bytes, expected {len(raw)}" in msg


def test_directory_with_extra_bytes(closed: tuple[Path, np.ndarray]) -> None:
    path, _ = closed
    with open(path, "ab") as f:
        f.write(b"\0" * 20)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*20 unexpected bytes"):
        Directory.open(path)


def test_corrupt_index(closed: tuple[Path, np.ndarray]) -> None:
    path, _ = closed
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40  # a crc byte of the last entry
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path)) + r": index page 0 .*CRC-32C"):
        Directory.open(path)


def test_corrupt_index_of_a_2_0_0_volume(tmp_path: Path) -> None:
    shutil.copytree(V2_DATA / "v2_uint16_zstd_live", tmp_path / "v", copy_function=shutil.copyfile)
    path = tmp_path / "v" / "precomputed.blockfs"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path)) + ".*CRC-32C"):
        Directory.open(path)


# -------------------------------------------------------------- bad block files
def test_missing_block_file(closed: tuple[Path, np.ndarray]) -> None:
    path, _ = closed
    os.unlink(f"{path}.0")
    d = Directory.open(path)  # opening does not read blocks
    with pytest.raises(MissingFileError, match=re.escape(f"{path}.0") + ".*missing"):
        d.read_block(8, 8, 8)
    with pytest.raises(MissingFileError):
        d[:]


def test_missing_v1_block_file(tmp_path: Path) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((8, 8, 16), np.uint8), (8, 8, 8), n_files=2)
    os.unlink(v.block_files[1])
    d = Directory.open(v.path)
    assert same(d.read_block(0, 0, 0), np.ones((8, 8, 8), np.uint8))
    with pytest.raises(MissingFileError, match=re.escape(v.block_files[1])):
        d.read_block(8, 0, 0)


def test_truncated_block_file(closed: tuple[Path, np.ndarray]) -> None:
    path, data = closed
    d = Directory.open(path)
    last = max(d.grid.origins(), key=lambda o: int(d.index[d.grid.position(*o)]["offset"]))
    entry = d.index[d.grid.position(*last)]
    end = int(entry["offset"] + entry["size"])
    os.truncate(f"{path}.0", end - 5)
    d = Directory.open(path)
    with pytest.raises(TruncatedFileError) as e:
        d.read_block(*last)
    msg = str(e.value)
    assert f"{path}.0" in msg and "({}, {}, {})".format(*last) in msg and str(end) in msg
    for o in d.grid.origins():  # the other blocks are intact
        if o != last:
            x, y, z = o
            assert same(d.read_block(x, y, z), data[z : z + 8, y : y + 8, x : x + 8])


def test_flipped_byte_is_a_checksum_error(closed: tuple[Path, np.ndarray]) -> None:
    path, data = closed
    d = Directory.open(path)
    entry = d.index[d.grid.position(8, 0, 8)]
    with open(f"{path}.0", "r+b") as f:
        f.seek(int(entry["offset"]) + int(entry["size"]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    d = Directory.open(path)
    with pytest.raises(ChecksumError) as e:
        d.read_block(8, 0, 8)
    msg = str(e.value)
    assert f"{path}.0" in msg and "(8, 0, 8)" in msg and "checksum" in msg
    with pytest.raises(ChecksumError):
        d[8:, 0:8, :]
    assert same(d.read_block(0, 0, 0), data[:8, :8, :8])


# ------------------------------------------------------------ bad parameters
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"compression": "gzip"}, "compression.*'gzip'"),
        ({"compression": "zstd", "compression_level": 10}, r"level.*\(0, 9\).*10"),
        ({"compression_level": -1}, r"\(0, 9\)"),
        ({"x_block_size": 0}, "block sizes"),
        ({"z_block_size": 2.5}, "block sizes"),
        ({"dtype": "complex128"}, "dtype"),
        ({"dtype": "float16"}, "dtype"),
        ({"x_extent": 0}, "extents"),
        ({"y_extent": -5}, "extents"),
    ],
)
def test_invalid_parameters(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    args = {
        "x_extent": 8,
        "y_extent": 8,
        "z_extent": 8,
        "dtype": np.uint8,
        "directory_filename": tmp_path / "p.blockfs",
    }
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=pattern):
        Directory(**args)
    assert not os.path.exists(tmp_path / "p.blockfs")


# ------------------------------------------- errors do not lose committed data
def test_write_errors_lose_nothing_already_committed(live: Directory) -> None:
    good = random_block((16, 16, 16), "uint16", 2)
    live.write_block(good, 16, 0, 0)
    bad_calls = [
        (np.zeros((16, 16, 15), np.uint16), 16, 0, 0),
        (np.full((16, 16, 16), 0.5), 16, 0, 0),
        (np.full((16, 16, 16), 1 << 20, np.int64), 16, 0, 0),
        (np.zeros((16, 16, 16), np.uint16), 8, 16, 0),
        (np.zeros((16, 16, 16), np.uint16), 0, 48, 0),
    ]
    for call in bad_calls:
        with pytest.raises(BlockfsError):
            live.write_block(*call)
    live.write_block(good[:4], 0, 0, 16)
    live.close()
    d = Directory.open(live.directory_filename)
    assert set(d) == {(0, 0, 0), (16, 0, 0), (0, 0, 16)}
    assert same(d.read_block(16, 0, 0), good) and same(d.read_block(0, 0, 16), good[:4])
    assert same(d.read_block(0, 0, 0), np.full((16, 16, 16), 7, np.uint16))


def test_an_error_inside_write_blocks_keeps_the_blocks_before_it(tmp_path: Path) -> None:
    d = Directory(64, 64, 64, np.uint8, tmp_path / "v.blockfs", 8, 8, 8)
    d.create()
    origins = list(d.grid.origins())[:60]
    items = [(np.full((8, 8, 8), i % 200 + 1, np.uint8), *o) for i, o in enumerate(origins)]
    items[40] = (np.zeros((8, 8, 7), np.uint8), *origins[40])
    with pytest.raises(BlockShapeError, match=re.escape("({}, {}, {})".format(*origins[40]))):
        d.write_blocks(iter(items), n_threads=2)
    d.close()
    r = Directory.open(tmp_path / "v.blockfs")
    present = set(r)
    assert set(origins[:40]) <= present and origins[40] not in present
    for i, o in enumerate(origins):
        if o in present:
            assert same(r.read_block(*o), items[i][0])


@pytest.mark.parametrize(
    "change, pattern",
    [({"NOffsetBits": 40, "NSizeBits": 40}, "64 bits"), ({"BlockFilenames": []}, "no block files"),
     ({"XStride": "x"}, "invalid format 1.0.0 metadata")],
)
def test_malformed_v1_metadata(tmp_path: Path, change: dict, pattern: str) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((4, 4, 4), np.uint8), (4, 4, 4))
    raw = Path(v.path).read_bytes()
    m, dpos = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    md.update(change)
    body = json.dumps(md).encode()
    Path(v.path).write_bytes(raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[dpos:])
    with pytest.raises(FormatError, match=re.escape(v.path) + ".*" + pattern):
        Directory.open(v.path)


def test_v1_metadata_missing_a_key(tmp_path: Path) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((4, 4, 4), np.uint8), (4, 4, 4))
    raw = Path(v.path).read_bytes()
    m, dpos = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    del md["NSizeBits"]
    body = json.dumps(md).encode()
    Path(v.path).write_bytes(raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[dpos:])
    with pytest.raises(FormatError, match="'NSizeBits'"):
        Directory.open(v.path)
