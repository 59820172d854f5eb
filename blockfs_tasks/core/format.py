"""The blockfs on-disk format, versions 2.0.0 (written) and 1.0.0 (read).

A volume is one **directory file** (``vol.blockfs``) plus a few **block files**
(``vol.blockfs.0``, ``vol.blockfs.1``...) beside it. All integers are
little-endian. Block *positions* number the blocks in C order over
(z block, y block, x block), x fastest (see :mod:`.grid`).

Block file
    Blosc1 frames, one per block, appended one after another; no header.
    Exactly one writer appends to a block file, so writers never lock.

Directory file, version 2.0.0::

    offset  size    field
    0       8       magic b"BlockFS\\0"
    8       4       u32 M, length of the JSON metadata
    12      4       u32 D, offset of the index (16 + M, a multiple of 8)
    16      M       JSON metadata, UTF-8, padded with spaces
    D       20 * N  index: one entry per block position, N = number of blocks
    D+20N           end of file (a shorter file is truncated)

    index entry (20 bytes): u64 offset, u32 size, u32 file, u32 crc32c
        file    0 = block never written (reads as zeros), else 1 + i where
                i indexes BlockFiles
        offset  byte offset of the block's frame in that block file
        size    byte length of the frame
        crc32c  CRC-32C (Castagnoli) of the frame's bytes

    JSON keys: Version "2.0.0"; XExtent, YExtent, ZExtent; XBlockSize,
    YBlockSize, ZBlockSize; DType (numpy name; data are little-endian);
    Compression (Blosc compressor), CompressionLvl (0-9), Shuffle (bool);
    BlockFiles (names relative to the directory file's folder); IndexCRC32C
    (CRC-32C of the index bytes); Metadata (the application's own dict).

    The directory is written to a temporary file, fsynced and renamed over
    the old one, so a reader sees the old or the new directory, never half.

Fragment file (``vol.blockfs.<k>.fragment``, one per batch) and journal
(``vol.blockfs.journal``, shared by the live writers of one session)::

    0       8       magic b"BFSFRAG\\0"
    8       4       u32 J, length of the JSON volume spec
    12      4       u32 H, offset of the first entry (16 + J, a multiple of 8)
    16      J       JSON spec: the directory's keys but BlockFiles and IndexCRC32C,
                            plus an optional "Batch" (what the batch covers)
    H       32 * E  entries, in commit order

    entry (32 bytes): u64 position, u64 offset, u32 size, u32 file,
                      u32 crc32c of the frame, u32 crc32c of the entry's first 28 bytes
        file    the block file's number k: its name is ``<directory name>.<k>``

    An entry is appended only after its frame's bytes are in the block file.
    Merging fragments into the directory: for the same position, the newest
    entry wins (later in a fragment, or in a later fragment). A journal may
    end in a torn entry (a writer killed mid-append); it is dropped.

Directory file, version 1.0.0 (the original blockfs; read as-is)::

    0 magic b"BlockFS\\0"; 8 u32 M; 12 u32 D; 16 JSON (keys XBlockSize...,
    NOffsetBits, NSizeBits, XStride, YStride, ZStride, BlockFilenames,
    Compression, CompressionLvl, Version "1.0.0", plus application keys);
    at D: entries of (NOffsetBits + NSizeBits + 7) // 8 bytes, entry i at
    D + i * size, i = x//XB * XStride + y//YB * YStride + z//ZB * ZStride,
    value = offset + size << NOffsetBits; block file = BlockFilenames[i % len];
    size 0, or an entry past the end of the file, is a block never written.
    Block file names are absolute paths; when one no longer exists, the file
    of the same name beside the directory file is used.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np

from .codec import BlockCodec, check_dtype, checksum
from .errors import FormatError, TruncatedFileError, UnsupportedVersionError
from .grid import BlockGrid

MAGIC = b"BlockFS\0"
FRAGMENT_MAGIC = b"BFSFRAG\0"
VERSION = "2.0.0"
VERSION_1 = "1.0.0"
KNOWN_VERSIONS = (VERSION_1, VERSION)

INDEX_DTYPE = np.dtype([("offset", "<u8"), ("size", "<u4"), ("file", "<u4"), ("crc32c", "<u4")])
ENTRY_DTYPE = np.dtype(
    [
        ("position", "<u8"),
        ("offset", "<u8"),
        ("size", "<u4"),
        ("file", "<u4"),
        ("crc32c", "<u4"),
        ("entry_crc32c", "<u4"),
    ]
)
_ENTRY_STRUCT = struct.Struct("<QQIII")
_HEADER = struct.Struct("<8sII")

_V1_KEYS = {
    "XBlockSize", "YBlockSize", "ZBlockSize", "NOffsetBits", "NSizeBits",
    "XExtent", "YExtent", "ZExtent", "DType", "BlockFilenames",
    "XStride", "YStride", "ZStride", "Compression", "CompressionLvl", "Version",
}


@dataclass(frozen=True)
class VolumeSpec:
    """What a volume is: its grid, dtype, codec and application metadata."""

    grid: BlockGrid
    dtype: np.dtype
    codec: BlockCodec = field(default_factory=BlockCodec)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype).newbyteorder("<"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON keys of the format, BlockFiles and IndexCRC32C aside."""
        (ex, ey, ez), (bx, by, bz) = self.grid.extent_xyz, self.grid.block_xyz
        return {
            "Version": VERSION,
            "XExtent": ex, "YExtent": ey, "ZExtent": ez,
            "XBlockSize": bx, "YBlockSize": by, "ZBlockSize": bz,
            "DType": self.dtype.name,
            "Compression": self.codec.compression,
            "CompressionLvl": self.codec.level,
            "Shuffle": self.codec.shuffle,
            "Metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "metadata") -> VolumeSpec:
        """Read the keys written by :meth:`to_dict`; ``source`` names the file in errors."""
        try:
            grid = BlockGrid(
                (d["XExtent"], d["YExtent"], d["ZExtent"]),
                (d["XBlockSize"], d["YBlockSize"], d["ZBlockSize"]),
            )
            codec = BlockCodec(d["Compression"], d["CompressionLvl"], bool(d.get("Shuffle", True)))
            return cls(grid, np.dtype(d["DType"]), codec, dict(d.get("Metadata", {})))
        except KeyError as e:
            raise FormatError(f"{source}: metadata lacks the key {e.args[0]!r}") from e
        except (TypeError, ValueError) as e:
            raise FormatError(f"{source}: invalid metadata: {e}") from e

    def same_volume(self, other: VolumeSpec) -> bool:
        """True when both describe the same grid, dtype and codec."""
        return (self.grid, self.dtype, self.codec) == (other.grid, other.dtype, other.codec)


@dataclass
class DirectoryContents:
    """A directory file as read: spec, block file names and the decoded index."""

    version: str
    spec: VolumeSpec
    block_files: list[str]
    index: np.ndarray  # INDEX_DTYPE, one entry per position; file 0 = absent
    has_checksums: bool


def _padded_json(obj: dict[str, Any], start: int) -> bytes:
    raw = json.dumps(obj).encode("utf-8")
    return raw + b" " * (-(start + len(raw)) % 8)


def encode_directory_header(spec: VolumeSpec, block_files: list[str], index: np.ndarray) -> bytes:
    """Header + metadata of a version 2.0.0 directory whose index is ``index``."""
    if index.dtype != INDEX_DTYPE or len(index) != spec.grid.n_blocks:
        raise FormatError(f"index must be {spec.grid.n_blocks} entries of {INDEX_DTYPE}")
    md = spec.to_dict()
    md["BlockFiles"] = list(block_files)
    md["IndexCRC32C"] = checksum(index.tobytes())
    body = _padded_json(md, _HEADER.size)
    return _HEADER.pack(MAGIC, len(body), _HEADER.size + len(body)) + body


def _read_header(path: str, fd_bytes: bytes, magic: bytes, what: str) -> tuple[int, int]:
    if len(fd_bytes) < _HEADER.size:
        raise TruncatedFileError(f"{path}: {len(fd_bytes)} bytes is too short for a {what} header")
    got, md_size, data_offset = _HEADER.unpack_from(fd_bytes)
    if got != magic:
        raise FormatError(f"{path} is not a {what}: it starts with {got!r}, expected {magic!r}")
    return md_size, data_offset


def read_directory(path: str) -> DirectoryContents:
    """Read a directory file of either format version.

    The index of a large version 2 volume is memory-mapped, not read, so
    opening costs the same whatever the volume's size.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            md_size, index_offset = _read_header(path, head, MAGIC, "blockfs directory file")
            raw_md = f.read(md_size)
    except FileNotFoundError as e:
        from .errors import MissingFileError

        raise MissingFileError(f"{path}: no such blockfs directory file") from e
    if len(raw_md) < md_size:
        raise TruncatedFileError(f"{path}: metadata is cut short ({len(raw_md)} of {md_size} bytes)")
    try:
        md = json.loads(raw_md.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: metadata is not valid JSON: {e}") from e
    version = md.get("Version")
    if version == VERSION_1:
        return _read_v1(path, md, index_offset, size)
    if version != VERSION:
        raise UnsupportedVersionError(
            f"{path}: format version {version!r}; this reader knows {', '.join(KNOWN_VERSIONS)}"
        )
    spec = VolumeSpec.from_dict(md, path)
    n = spec.grid.n_blocks
    expected = index_offset + n * INDEX_DTYPE.itemsize
    if size < expected:
        raise TruncatedFileError(f"{path}: directory is truncated: {size} bytes, expected {expected}")
    if size > expected:
        raise FormatError(f"{path}: {size - expected} unexpected bytes after the index")
    if n * INDEX_DTYPE.itemsize <= 64 << 20:
        index = np.fromfile(path, INDEX_DTYPE, count=n, offset=index_offset)
        if checksum(index.tobytes()) != md.get("IndexCRC32C"):
            raise FormatError(f"{path}: the index does not match its checksum (IndexCRC32C)")
    else:
        index = np.memmap(path, INDEX_DTYPE, mode="r", offset=index_offset, shape=(n,))
    return DirectoryContents(VERSION, spec, list(md.get("BlockFiles", [])), index, True)


def _read_v1(path: str, md: dict[str, Any], index_offset: int, size: int) -> DirectoryContents:
    """Decode an original blockfs 1.0.0 directory into the version 2 index layout."""
    try:
        grid = BlockGrid(
            (md["XExtent"], md["YExtent"], md["ZExtent"]),
            (md["XBlockSize"], md["YBlockSize"], md["ZBlockSize"]),
        )
        codec = BlockCodec(md["Compression"], md["CompressionLvl"])
        app = {k: v for k, v in md.items() if k not in _V1_KEYS}
        spec = VolumeSpec(grid, np.dtype(md["DType"]), codec, app)
        names = list(md["BlockFilenames"])
        n_offset_bits, n_size_bits = int(md["NOffsetBits"]), int(md["NSizeBits"])
        strides = (int(md["XStride"]), int(md["YStride"]), int(md["ZStride"]))
    except KeyError as e:
        raise FormatError(f"{path}: format 1.0.0 metadata lacks the key {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise FormatError(f"{path}: invalid format 1.0.0 metadata: {e}") from e
    entry_size = (n_offset_bits + n_size_bits + 7) // 8
    if not names or entry_size > 8:
        raise FormatError(f"{path}: format 1.0.0 metadata with no block files or entries over 64 bits")
    raw = np.fromfile(path, np.uint8, offset=index_offset) if size > index_offset else np.zeros(0, np.uint8)
    n_stored = len(raw) // entry_size
    gz, gy, gx = grid.grid_shape
    iz, iy, ix = np.meshgrid(np.arange(gz), np.arange(gy), np.arange(gx), indexing="ij")
    slot = (ix * strides[0] + iy * strides[1] + iz * strides[2]).ravel().astype(np.int64)
    stored = slot < n_stored
    entries = raw[: n_stored * entry_size].reshape(n_stored, entry_size).astype(np.uint64)
    weights = np.uint64(1) << (np.arange(entry_size, dtype=np.uint64) * np.uint64(8))
    value = np.zeros(len(slot), np.uint64)
    value[stored] = (entries[slot[stored]] * weights).sum(axis=1, dtype=np.uint64)
    offset = value & np.uint64((1 << n_offset_bits) - 1)
    block_size = (value >> np.uint64(n_offset_bits)) & np.uint64((1 << n_size_bits) - 1)
    index = np.zeros(len(slot), INDEX_DTYPE)
    present = block_size > 0
    index["offset"] = offset
    index["size"] = block_size
    index["file"] = np.where(present, slot % len(names) + 1, 0)
    return DirectoryContents(VERSION_1, spec, names, index, False)


def encode_fragment_header(spec: VolumeSpec, batch: dict[str, Any] | None = None) -> bytes:
    """Header of a fragment or journal file for a volume of ``spec``.

    ``batch`` (a fragment's optional "Batch" key) says what the batch covers,
    so that a changed plan is not mistaken for a finished batch.
    """
    md = spec.to_dict()
    if batch is not None:
        md["Batch"] = batch
    body = _padded_json(md, _HEADER.size)
    return _HEADER.pack(FRAGMENT_MAGIC, len(body), _HEADER.size + len(body)) + body


def encode_entry(position: int, file: int, offset: int, size: int, crc: int) -> bytes:
    """One 32-byte fragment entry, its own checksum included."""
    head = _ENTRY_STRUCT.pack(position, offset, size, file, crc)
    return head + checksum(head).to_bytes(4, "little")


@dataclass
class Fragment:
    """A fragment or journal as read: the spec it was written for and its valid entries."""

    spec: VolumeSpec
    entries: np.ndarray  # ENTRY_DTYPE, commit order
    dropped: int  # torn or corrupt entries left out


def read_fragment(path: str, strict: bool = True) -> Fragment:
    """Read a fragment file; ``strict`` makes any torn or corrupt entry an error.

    A journal is read with ``strict=False``: a writer killed mid-append leaves
    a torn last entry, which is dropped, not an error.
    """
    try:
        data = open(path, "rb").read()
    except FileNotFoundError as e:
        from .errors import MissingFileError

        raise MissingFileError(f"{path}: no such fragment file") from e
    md_size, start = _read_header(path, data, FRAGMENT_MAGIC, "blockfs fragment file")
    if len(data) < start:
        raise TruncatedFileError(f"{path}: fragment header is cut short")
    try:
        spec = VolumeSpec.from_dict(json.loads(data[_HEADER.size : _HEADER.size + md_size]), path)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: fragment spec is not valid JSON: {e}") from e
    body = data[start:]
    tail = len(body) % ENTRY_DTYPE.itemsize
    if tail and strict:
        raise TruncatedFileError(f"{path}: fragment ends in a partial entry ({tail} bytes)")
    n = len(body) // ENTRY_DTYPE.itemsize
    entries = np.frombuffer(body, ENTRY_DTYPE, count=n)
    step = ENTRY_DTYPE.itemsize
    ok = np.fromiter(
        (checksum(body[i : i + 28]) for i in range(0, n * step, step)), np.uint32, count=n
    ) == entries["entry_crc32c"]
    bad = int(n - ok.sum())
    if bad and strict:
        first = int(np.flatnonzero(~ok)[0])
        raise FormatError(f"{path}: {bad} corrupt fragment entries (first: entry {first})")
    return Fragment(spec, entries[ok].copy(), bad + (1 if tail else 0))


def newest_entries(entries: np.ndarray) -> np.ndarray:
    """Keep, for each position, only the last entry (entries in commit order)."""
    if len(entries) == 0:
        return entries
    reversed_positions = entries["position"][::-1]
    _, first_in_reversed = np.unique(reversed_positions, return_index=True)
    return entries[len(entries) - 1 - first_in_reversed]


def rewrite_metadata(
    src: str,
    dest: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
    chunk_size: int = 1 << 20,
) -> None:
    """Write ``src`` to ``dest`` with its JSON metadata passed through ``update``.

    The index bytes are copied unchanged, ``chunk_size`` bytes at a time, and
    ``dest`` is published atomically (it may be ``src`` itself). Works for both
    format versions; each keeps its own header layout.
    """
    from .atomic import published

    with open(src, "rb") as f:
        md_size, index_offset = _read_header(src, f.read(_HEADER.size), MAGIC, "blockfs directory file")
        md = json.loads(f.read(md_size).decode("utf-8"))
        version = md.get("Version")
        if version not in KNOWN_VERSIONS:
            raise UnsupportedVersionError(f"{src}: format version {version!r}")
        md = update(md)
        raw = json.dumps(md).encode("utf-8")
        body = raw if version == VERSION_1 else _padded_json(md, _HEADER.size)
        f.seek(index_offset)
        with published(dest) as tmp, open(tmp, "wb") as out:
            out.write(_HEADER.pack(MAGIC, len(body), _HEADER.size + len(body)) + body)
            while chunk := f.read(chunk_size):
                out.write(chunk)
            out.flush()
