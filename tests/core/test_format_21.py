"""Format 2.1.0: header + metadata CRC, per-page index CRCs (checked lazily when memory-mapped), codec id."""

from __future__ import annotations

import json
import re
import shutil
import struct
import tracemalloc
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from v1_writer import write_v1_volume

from blockfs_tasks.core import Directory, FormatError, directory_file
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.errors import CorruptIndexError, UnsupportedCodecError

from .helpers import TESTS, random_block, same

V2_DATA = TESTS / "data" / "blockfs-v2.0.0"
INDEX = np.dtype([("offset", "<u8"), ("size", "<u4"), ("file", "<u4"), ("crc", "<u4")])


def write(
    path: Path, shape_zyx: tuple[int, int, int], block: int, seed: int = 0, metadata: dict | None = None
) -> np.ndarray:
    data = random_block(shape_zyx, "uint16", seed)
    d = Directory(shape_zyx[2], shape_zyx[1], shape_zyx[0], np.uint16, path, block, block, block, metadata=metadata)
    d.create()
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        d.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    d.close()
    return data


def parse(raw: bytes) -> tuple[dict, int, np.ndarray, int]:
    """Parse a 2.1.0 directory from the spec (format.py's docstring), independently: md, E, page CRCs, D."""
    magic, m, dpos = struct.unpack_from("<8sII", raw)
    assert magic == b"BlockFS\0" and m % 8 == 0
    (crc,) = struct.unpack_from("<I", raw, 16 + m)
    assert crc == google_crc32c.value(raw[: 16 + m])
    md = json.loads(raw[16 : 16 + m])
    n = (
        -(-md["XExtent"] // md["XBlockSize"])
        * -(-md["YExtent"] // md["YBlockSize"])
        * -(-md["ZExtent"] // md["ZBlockSize"])
    )
    e = md["IndexPageEntries"]
    pages = -(-n // e)
    table = np.frombuffer(raw, "<u4", count=pages, offset=20 + m)
    assert dpos == 20 + m + 4 * pages + (-(20 + m + 4 * pages) % 8) and not any(raw[20 + m + 4 * pages : dpos])
    assert len(raw) == dpos + 20 * n
    return md, e, table, dpos


def test_new_volumes_are_2_1_0_laid_out_as_the_spec_says(tmp_path: Path) -> None:
    data = write(tmp_path / "v.blockfs", (20, 20, 20), 4, metadata={"voxel_size_um": [1.8, 1.8, 2.0]})
    raw = (tmp_path / "v.blockfs").read_bytes()
    md, e, table, dpos = parse(raw)
    assert md["Version"] == "2.1.0" and e == fmt.PAGE_ENTRIES
    assert md["Codec"] == {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1}
    assert "Compression" not in md and "IndexCRC32C" not in md
    assert md["Metadata"] == {"voxel_size_um": [1.8, 1.8, 2.0]} and md["BlockFiles"] == ["v.blockfs.0"]
    assert len(table) == 1 and table[0] == google_crc32c.value(raw[dpos:])
    d = Directory.open(tmp_path / "v.blockfs")
    assert d.version == "2.1.0" and same(d[:], data)


def test_one_page_checks_alone_as_a_remote_reader_would(tmp_path: Path) -> None:
    """Fetch the header, one table entry and one page of a many-page index: that page verifies by itself."""
    write(tmp_path / "v.blockfs", (16, 16, 16), 4)
    path = tmp_path / "v.blockfs"
    spec = fmt.read_directory(path).spec
    index = np.zeros(spec.grid.n_blocks, fmt.INDEX_DTYPE)
    index["offset"] = np.arange(len(index))  # any index: 64 entries in pages of 5
    path.write_bytes(fmt.encode_directory_header(spec, ["v.blockfs.0"], index, page_entries=5) + index.tobytes())
    raw = path.read_bytes()
    md, e, table, dpos = parse(raw)
    assert e == 5 and len(table) == 13
    for p in range(13):
        page = raw[dpos + 20 * e * p : dpos + 20 * min(e * (p + 1), 64)]
        assert google_crc32c.value(page) == table[p]
        assert np.frombuffer(page, INDEX)["offset"].tolist() == list(range(5 * p, min(5 * p + 5, 64)))


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def test_metadata_change_is_detected(tmp_path: Path) -> None:
    """A voxel size 1.8 -> 1.9 (still valid JSON) is an error, not a silent change (issue 9 item 7)."""
    path = tmp_path / "v.blockfs"
    write(path, (8, 8, 8), 4, metadata={"voxel_size_um": [1.8, 1.8, 2.0]})
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"1.8, 1.8", b"1.9, 1.8"))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path)) + ".*header and JSON metadata"):
        Directory.open(path)


@pytest.mark.parametrize("field", ["XExtent", "DType", "Codec", "BlockFiles", "IndexPageEntries"])
def test_every_header_byte_is_covered(tmp_path: Path, field: str) -> None:
    path = tmp_path / "v.blockfs"
    write(path, (8, 8, 8), 4)
    raw = path.read_bytes()
    at = raw.index(field.encode()) + len(field) + 4  # inside the value
    _flip(path, at)
    with pytest.raises(FormatError):
        Directory.open(path)


def test_unknown_codec_id_is_named(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write(path, (8, 8, 8), 4)
    fmt.rewrite_metadata(str(path), str(path), lambda md: {**md, "Codec": {"id": "zfp", "rate": 8}})
    with pytest.raises(UnsupportedCodecError, match=re.escape(str(path)) + ".*unknown codec id 'zfp'"):
        Directory.open(path)


# ------------------------------------------------------------ memory-mapped index
@pytest.fixture
def mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray]:
    """A 2.1.0 volume of 3 index pages whose index is memory-mapped (threshold lowered)."""
    path = tmp_path / "v.blockfs"
    data = write(path, (16, 16, 16), 2)  # 512 blocks
    spec = fmt.read_directory(path).spec
    index = np.array(fmt.read_directory(path).index)
    path.write_bytes(fmt.encode_directory_header(spec, ["v.blockfs.0"], index, page_entries=200) + index.tobytes())
    monkeypatch.setattr(directory_file, "MMAP_THRESHOLD", 0)
    return path, data


def test_mapped_index_is_checked_page_by_page_on_first_use(mapped: tuple[Path, np.ndarray]) -> None:
    """A flipped bit in a large volume's index is an error, never a block read as zeros (issue 9 item 6)."""
    path, data = mapped
    raw = path.read_bytes()
    dpos = struct.unpack_from("<I", raw, 12)[0]
    _flip(path, dpos + 20 * 300 + 12, 0x01)  # the "file" field of position 300 (page 1): 1 -> 0 = "absent"
    d = Directory.open(path)  # opening reads no page
    assert isinstance(d.index, fmt.PagedIndex)
    assert same(d.read_block(0, 0, 0), data[:2, :2, :2])  # page 0 is sound
    x, y, z = d.grid.origin(300)
    with pytest.raises(CorruptIndexError, match=r"index page 1 \(block positions 200\.\.399\)"):
        d.read_block(x, y, z)
    x, y, z = d.grid.origin(450)
    assert same(d.read_block(x, y, z), data[z : z + 2, y : y + 2, x : x + 2])  # page 2 is sound
    assert fmt.index_errors(d.index) == {
        1: f"{path}: index page 1 (block positions 200..399) does not match its CRC-32C"
    }
    with pytest.raises(CorruptIndexError):
        np.asarray(d.index)  # a whole copy (e.g. a writer's merge) checks every page


def test_mapped_index_reads_like_an_array(mapped: tuple[Path, np.ndarray]) -> None:
    path, data = mapped
    d = Directory.open(path)
    assert same(d[:], data) and len(d) == 512 and len(list(d)) == 512
    index = d.index
    full = np.array(index)
    assert index[5] == full[5] and index[-1] == full[-1]
    assert same(index[10:250], full[10:250]) and same(index[np.array([3, 499])], full[[3, 499]])
    assert same(index["size"], full["size"])


def test_mapped_2_0_0_index_is_checked_in_one_streaming_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(V2_DATA / "v2_uint16_zstd_live", tmp_path / "v", copy_function=shutil.copyfile)
    path = tmp_path / "v" / "precomputed.blockfs"
    monkeypatch.setattr(directory_file, "MMAP_THRESHOLD", 0)
    expected = np.load(tmp_path / "v" / "expected.npy")
    assert same(Directory.open(path)[:], expected)
    _flip(path, len(path.read_bytes()) - 20 + 12)  # "file" of the last entry
    d = Directory.open(path)
    with pytest.raises(CorruptIndexError, match="index page 0"):
        d.read_block(0, 0, 0)


def test_opening_a_20m_block_volume_reads_no_index(tmp_path: Path) -> None:
    """Opening costs the same whatever the size: the index of 20 M blocks (400 MB) stays unread."""
    path = tmp_path / "big.blockfs"
    spec = fmt.VolumeSpec(fmt.BlockGrid((8 * 400, 8 * 250, 8 * 200), (8, 8, 8)), np.dtype("uint8"))
    n = spec.grid.n_blocks
    assert n == 20_000_000
    pages = -(-n // fmt.PAGE_ENTRIES)
    zero_page = google_crc32c.value(bytes(20 * fmt.PAGE_ENTRIES))
    last = google_crc32c.value(bytes(20 * (n - (pages - 1) * fmt.PAGE_ENTRIES)))
    crcs = np.full(pages, zero_page, "<u4")
    crcs[-1] = last
    md = {**spec.to_dict(), "BlockFiles": [], "IndexPageEntries": fmt.PAGE_ENTRIES}
    head = fmt.header_with_table(md, crcs)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 20 * n)  # a sparse file: an all-absent index
    tracemalloc.start()
    d = Directory.open(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20 and isinstance(d.index, fmt.PagedIndex)
    assert not d.read_block(8 * 399, 8 * 249, 8 * 199).any()


# -------------------------------------------------------------- format 1.0.0
@pytest.mark.parametrize("strides", [(0, 2, 4), (1, -2, 4), (1, 1, 4), (2, 1, 1)])
def test_v1_strides_that_share_entries_are_refused(tmp_path: Path, strides: tuple[int, int, int]) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((8, 8, 8), np.uint8), (4, 4, 4))  # 2 x 2 x 2 blocks
    raw = Path(v.path).read_bytes()
    m, dpos = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    md.update(XStride=strides[0], YStride=strides[1], ZStride=strides[2])
    body = json.dumps(md).encode()
    Path(v.path).write_bytes(raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[dpos:])
    with pytest.raises(FormatError, match=re.escape(v.path) + r".*strides \(x, y, z\).*map two blocks onto one entry"):
        Directory.open(v.path)


def test_v1_stride_of_a_one_block_axis_does_not_matter(tmp_path: Path) -> None:
    data = random_block((4, 8, 8), "uint8", 3)  # one block along z
    v = write_v1_volume(tmp_path / "v.blockfs", data, (4, 4, 4), strides_xyz=(1, 2, 0))
    assert same(Directory.open(v.path)[:], data)


def test_v1_directory_claiming_67m_blocks_allocates_nothing(tmp_path: Path) -> None:
    """414 bytes claiming 67 M blocks drove memory to 5.5 GB (issue 9 item 9): now a FormatError, cheaply."""
    v = write_v1_volume(tmp_path / "v.blockfs", np.ones((4, 4, 4), np.uint8), (4, 4, 4))
    raw = Path(v.path).read_bytes()
    m, dpos = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    md.update(XExtent=4 * 406, YExtent=4 * 406, ZExtent=4 * 406, XStride=1, YStride=406, ZStride=406 * 406)
    body = json.dumps(md).encode()
    Path(v.path).write_bytes(raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[dpos:])
    tracemalloc.start()
    with pytest.raises(FormatError, match="claims 66923416 blocks"):
        Directory.open(v.path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "key", ["XStride", "YStride", "ZStride", "XBlockSize", "ZBlockSize", "NOffsetBits", "NSizeBits"]
)
@pytest.mark.parametrize("value", [1 << 62, 1 << 63, 10**30])
def test_v1_huge_integers_are_format_errors_or_read(tmp_path: Path, key: str, value: int) -> None:
    """Integers past 64 bits in 1.0.0 metadata raised OverflowError from numpy; now a volume reads or a FormatError."""
    data = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16)
    v = write_v1_volume(tmp_path / "v.blockfs", data, (8, 8, 8))
    raw = Path(v.path).read_bytes()
    m, dpos = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    md[key] = value
    body = json.dumps(md).encode()
    Path(v.path).write_bytes(raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[dpos:])
    try:
        d = Directory.open(v.path)
        d[:]
    except FormatError:
        pass
