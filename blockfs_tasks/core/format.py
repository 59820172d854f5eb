"""The blockfs on-disk format: version 2.1.0 (written), 2.0.0 and 1.0.0 (read).

A volume is one **directory file** (``vol.blockfs``) plus a few **block files**
(``vol.blockfs.0``, ``vol.blockfs.1``...) beside it. All integers are
little-endian. Block *positions* number the blocks in C order over
(z block, y block, x block), x fastest (see :mod:`.grid`). CRC-32C is the
Castagnoli CRC (as in iSCSI, ext4, Btrfs).

Block file
    Frames of the volume's codec (Blosc1), one per block, appended one after
    another; no header. Exactly one writer appends to a block file, so
    writers never lock.

Directory file, version 2.1.0::

    offset  size    field
    0       8       magic b"BlockFS\\0"
    8       4       u32 M, length of the JSON metadata (a multiple of 8)
    12      4       u32 D, offset of the index
    16      M       JSON metadata, UTF-8, padded with spaces
    16+M    4       u32 CRC-32C of bytes 0 .. 16+M (header and metadata)
    20+M    4 * P   page table: u32 CRC-32C of each index page, P = ceil(N / E)
    20+M+4P         zero bytes up to D (the next multiple of 8)
    D       20 * N  index: one entry per block position, N = number of blocks
    D+20N           end of file (a shorter file is truncated)

    index entry (20 bytes): u64 offset, u32 size, u32 file, u32 crc32c
        file    0 = block never written (reads as zeros), else 1 + i where
                i indexes BlockFiles
        offset  byte offset of the block's frame in that block file
        size    byte length of the frame
        crc32c  CRC-32C of the frame's bytes

    index page p: entries p*E .. min((p+1)*E, N), bytes D + 20pE onwards;
        a reader that fetched one page checks it against table entry p alone

    JSON keys: Version "2.1.0"; XExtent, YExtent, ZExtent; XBlockSize,
    YBlockSize, ZBlockSize; DType (numpy name; data are little-endian);
    Codec (the codec's id and parameters: {"id": "blosc", "cname": "zstd" |
    "lz4" | "lz4hc" | "blosclz" | "zlib" | "snappy", "clevel": 0-9,
    "shuffle": 0 | 1}); BlockFiles (paths relative to the directory file's
    folder, usually bare names); IndexPageEntries (E, 4096 when written);
    Metadata (the application's own dict).

    A reader checks the header CRC before it trusts a key, and names an
    unknown Version or codec id. An index of up to 64 MiB is read and every
    page checked at open; a larger one is memory-mapped and each page is
    checked the first time it is used, so opening costs the same whatever
    the volume's size. blockfs-verify recomputes every CRC.

    The directory is written to a temporary file, fsynced and renamed over
    the old one, so a reader sees the old or the new directory, never half.

Directory file, version 2.0.0 (read; a writing session publishes 2.1.0)::

    as 2.1.0, but D = 16 + M (no header CRC, no page table) and the keys
    Compression (Blosc compressor name), CompressionLvl (0-9), Shuffle (bool)
    instead of Codec, and IndexCRC32C (CRC-32C of the whole index: checked
    at open, or for a memory-mapped index in one streaming pass when it is
    first used) instead of IndexPageEntries. Header and metadata unchecked.

Fragment file (``vol.blockfs.<k>.fragment``, one per batch) and journal
``vol.blockfs.<k>.journal`` (written only by the live writer of block file k;
merged in order of k; a ``vol.blockfs.journal`` left by versions before 2.1 is
still replayed). While a writing session is open, the session file
``vol.blockfs.session`` (JSON: host, machine, pid, process_start, since,
token) names it. Both files have this layout::

    0       8       magic b"BFSFRAG\\0"
    8       4       u32 J, length of the JSON volume spec (a multiple of 8)
    12      4       u32 H, offset of the first entry (24 + J)
    16      J       JSON spec: the directory's keys but BlockFiles and
                            IndexPageEntries, plus an optional "Batch" (what
                            the batch covers)
    16+J    4       u32 CRC-32C of bytes 0 .. 16+J
    20+J    4       zero
    H       32 * E  entries, in commit order
    (version 2.0.0 fragments: H = 16 + J, no CRC, 2.0.0 codec keys)

    entry (32 bytes): u64 position, u64 offset, u32 size, u32 file,
                      u32 crc32c of the frame, u32 crc32c of the entry's first 28 bytes
        file    the block file's number k: its name is ``<directory name>.<k>``

    An entry is appended only after its frame's bytes are in the block file.
    Merging fragments into the directory: for the same position, the newest
    entry wins (later in a fragment, or in a later fragment). A journal may
    end in a torn entry (a writer killed mid-append); it is dropped.

Directory file, version 1.0.0 (the original blockfs; read as-is, no checksums)::

    0 magic b"BlockFS\\0"; 8 u32 M; 12 u32 D; 16 JSON (keys XBlockSize...,
    NOffsetBits, NSizeBits, XStride, YStride, ZStride, BlockFilenames,
    Compression, CompressionLvl, Version "1.0.0", plus application keys);
    at D: entries of (NOffsetBits + NSizeBits + 7) // 8 bytes, entry i at
    D + i * size, i = x//XB * XStride + y//YB * YStride + z//ZB * ZStride,
    value = offset + size << NOffsetBits; block file = BlockFilenames[i % len];
    size 0, or an entry past the end of the file, is a block never written.
    Strides must give every block its own entry (a zero or negative stride
    of an axis with more than one block is an error). Block file names are
    absolute paths; when one no longer exists, the file of the same name
    beside the directory file is used. Only decoding can check a 1.0.0
    block: blockfs-upgrade rewrites the directory as 2.1.0 with checksums.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import google_crc32c
import numpy as np

from .codec import SUPPORTED_DTYPES, BlockCodec, check_dtype, checksum, codec_from_dict
from .errors import (
    ConfigurationError,
    CorruptIndexError,
    FormatError,
    MissingFileError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .grid import BlockGrid

MAGIC = b"BlockFS\0"
FRAGMENT_MAGIC = b"BFSFRAG\0"
VERSION = "2.1.0"
VERSION_2_0 = "2.0.0"
VERSION_1 = "1.0.0"
KNOWN_VERSIONS = (VERSION_1, VERSION_2_0, VERSION)
PAGE_ENTRIES = 4096  # index entries per CRC page when writing (80 KiB of index)
MMAP_THRESHOLD = 64 << 20  # larger indexes are memory-mapped and checked page by page

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
_CRC = struct.Struct("<I")
_MAX_OFFSET = 1 << 62  # no block file is larger; keeps pread offsets in range
_STREAM_CHUNK = 8 << 20  # bytes per CRC call when checking a memory-mapped index
_V1_INDEX_ALLOWANCE = 64 << 20  # a 1.0.0 grid may need this much index beyond 16 x its stored entries

_V1_KEYS = {
    "XBlockSize", "YBlockSize", "ZBlockSize", "NOffsetBits", "NSizeBits",
    "XExtent", "YExtent", "ZExtent", "DType", "BlockFilenames",
    "XStride", "YStride", "ZStride", "Compression", "CompressionLvl", "Version",
}
_DTYPE_NAMES = {d.name for d in SUPPORTED_DTYPES}


def has_block_checksums(version: str) -> bool:
    """True if volumes of ``version`` keep a CRC-32C of every block (2.0.0 and later)."""
    return version in (VERSION_2_0, VERSION)


def is_appendable(version: str) -> bool:
    """True if a writing session may add blocks to a volume of ``version`` (it then publishes 2.1.0).

    2.0.0 volumes qualify: their blocks and index already carry CRC-32Cs, which
    are checked before the index is merged. 1.0.0 volumes need blockfs-upgrade.
    """
    return version in (VERSION_2_0, VERSION)


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
        """The JSON keys of format 2.1.0, BlockFiles and IndexPageEntries aside."""
        (ex, ey, ez), (bx, by, bz) = self.grid.extent_xyz, self.grid.block_xyz
        return {
            "Version": VERSION,
            "XExtent": ex, "YExtent": ey, "ZExtent": ez,
            "XBlockSize": bx, "YBlockSize": by, "ZBlockSize": bz,
            "DType": self.dtype.name,
            "Codec": self.codec.to_dict(),
            "Metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "metadata") -> VolumeSpec:
        """Read the keys of format 2.1.0 (or 2.0.0's codec keys); ``source`` names the file in errors."""
        if not isinstance(d, dict):
            raise FormatError(f"{source}: metadata is not a JSON object")
        try:
            grid = BlockGrid(
                (d["XExtent"], d["YExtent"], d["ZExtent"]),
                (d["XBlockSize"], d["YBlockSize"], d["ZBlockSize"]),
            )
            if d.get("Version") == VERSION_2_0:
                shuffle = d.get("Shuffle", True)
                if not isinstance(shuffle, bool):
                    raise FormatError(f"Expected Shuffle true or false. Got {shuffle!r:.40} instead.")
                codec = BlockCodec(d["Compression"], d["CompressionLvl"], shuffle)
            else:
                codec = codec_from_dict(d["Codec"])
            metadata = d.get("Metadata", {})
            if not isinstance(metadata, dict):
                raise FormatError("Metadata is not a JSON object")
            return cls(grid, _dtype(d["DType"]), codec, metadata)
        except KeyError as e:
            raise FormatError(f"{source}: metadata lacks the key {e.args[0]!r}") from e
        except FormatError as e:
            raise type(e)(f"{source}: {e}") from e
        except (TypeError, ValueError) as e:
            raise FormatError(f"{source}: invalid metadata: {e}") from e

    def same_volume(self, other: VolumeSpec) -> bool:
        """True when both describe the same grid, dtype and codec."""
        return (self.grid, self.dtype, self.codec) == (other.grid, other.dtype, other.codec)


def _dtype(name: Any) -> np.dtype:
    """The numpy dtype of a stored DType name; only the names blockfs writes are accepted."""
    if not isinstance(name, str) or name not in _DTYPE_NAMES:
        raise FormatError(f"Expected DType in {sorted(_DTYPE_NAMES)}. Got {name!r:.40} instead.")
    return np.dtype(name)


class PagedIndex:
    """A memory-mapped index whose pages are checked against their CRC-32C when first used.

    It reads like the numpy array it wraps (an entry, a slice, a field, an
    array of positions, ``np.asarray``); each read first checks the pages it
    touches, so a flipped bit in the index is an error, never a block read as
    zeros. Checking a page twice is harmless, so threads need no lock.
    """

    def __init__(
        self, path: str, array: np.ndarray, page_entries: int, page_crcs: np.ndarray, n_files: int, max_frame: int
    ) -> None:
        self.path = path
        self.page_entries = page_entries
        self.page_crcs = page_crcs
        self._array = array
        self._n_files = n_files
        self._max_frame = max_frame
        self._checked = np.zeros(len(page_crcs), bool)

    dtype = property(lambda self: self._array.dtype)
    shape = property(lambda self: self._array.shape)
    ndim = property(lambda self: 1)
    size = property(lambda self: self._array.size)
    nbytes = property(lambda self: self._array.nbytes)

    def __len__(self) -> int:
        return len(self._array)

    @property
    def n_pages(self) -> int:
        """Number of CRC pages."""
        return len(self.page_crcs)

    def _page(self, page: int) -> np.ndarray:
        return self._array[page * self.page_entries : (page + 1) * self.page_entries]

    def page_error(self, page: int) -> str | None:
        """Recompute page ``page``'s CRC-32C (streaming, bounded memory) and check its entries."""
        entries = self._page(page)
        raw = entries.view(np.uint8)
        crc = 0
        for start in range(0, len(raw), _STREAM_CHUNK):
            crc = google_crc32c.extend(crc, raw[start : start + _STREAM_CHUNK])
        first = page * self.page_entries
        where = f"{self.path}: index page {page} (block positions {first}..{first + len(entries) - 1})"
        if crc != int(self.page_crcs[page]):
            return f"{where} does not match its CRC-32C"
        try:
            _check_entries(where, entries, self._n_files, self._max_frame, first)
        except FormatError as e:
            return str(e)
        return None

    def check_page(self, page: int) -> None:
        """Raise unless page ``page`` is sound (checked once, then remembered)."""
        if not self._checked[page]:
            error = self.page_error(page)
            if error is not None:
                raise CorruptIndexError(error)
            self._checked[page] = True

    def check_all(self) -> None:
        """Check every page not yet checked."""
        for page in np.flatnonzero(~self._checked):
            self.check_page(int(page))

    def _check_positions(self, positions: np.ndarray) -> None:
        n = len(self._array)
        valid = positions[(positions >= -n) & (positions < n)] % n
        for page in np.unique(valid // self.page_entries):
            self.check_page(int(page))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):  # the fast path of read_block: one entry
            n, position = len(self._array), int(key)
            if -n <= position < n:
                page = (position % n) // self.page_entries
                if not self._checked[page]:
                    self.check_page(page)
            return self._array[key]
        if isinstance(key, slice):
            span = np.arange(len(self._array))[key]
            if len(span):
                first, last = int(span.min()) // self.page_entries, int(span.max()) // self.page_entries
                for page in range(first, last + 1):
                    self.check_page(page)
            return np.asarray(self._array[key])
        positions = np.asarray(key) if not isinstance(key, (str, tuple)) else None
        if positions is not None and positions.dtype.kind in "iu":
            self._check_positions(positions.astype(np.int64).ravel())
        else:
            self.check_all()
        return np.asarray(self._array[key])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        self.check_all()
        out = np.asarray(self._array)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out

    def __repr__(self) -> str:
        return f"PagedIndex({self.path!r}, {len(self)} entries, {self.n_pages} pages, {int(self._checked.sum())} checked)"


@dataclass
class DirectoryContents:
    """A directory file as read: spec, block file names and the index."""

    version: str
    spec: VolumeSpec
    block_files: list[str]
    index: np.ndarray | PagedIndex  # INDEX_DTYPE, one entry per position; file 0 = absent
    has_checksums: bool  # blocks carry CRC-32Cs
    metadata_checked: bool = False  # header and metadata carry a CRC-32C (2.1.0)


def index_errors(index: np.ndarray | PagedIndex) -> dict[int, str]:
    """Recompute every page CRC of a memory-mapped index: {page: message} for each bad page.

    A read index (``np.ndarray``) was checked whole when it was read: no errors.
    """
    if not isinstance(index, PagedIndex):
        return {}
    errors = {p: index.page_error(p) for p in range(index.n_pages)}
    return {p: e for p, e in errors.items() if e is not None}


# --------------------------------------------------------------------- writing
def _align8(n: int) -> int:
    return n + (-n % 8)


def _padded_json(obj: dict[str, Any], start: int) -> bytes:
    raw = json.dumps(obj).encode("utf-8")
    return raw + b" " * (-(start + len(raw)) % 8)


def page_checksums(index: np.ndarray, page_entries: int = PAGE_ENTRIES) -> np.ndarray:
    """CRC-32C of each page of ``page_entries`` entries of ``index``."""
    raw = np.ascontiguousarray(index).view(np.uint8)
    step = page_entries * INDEX_DTYPE.itemsize
    return np.array([checksum(raw[i : i + step]) for i in range(0, len(raw), step)], "<u4")


def _check_names(path: str, names: Any, relative: bool) -> list[str]:
    """Block file names as stored: a list of non-empty strings (relative ones for 2.x)."""
    if not isinstance(names, list):
        raise FormatError(f"{path}: the block file names are not a JSON list")
    for name in names:
        if (
            not isinstance(name, str)
            or "\0" in name
            or os.path.basename(name) in ("", ".", "..")
            or (relative and os.path.isabs(name))
        ):
            kind = "a relative path" if relative else "a path"
            raise FormatError(f"{path}: expected each block file name to be {kind}. Got {name!r:.80} instead.")
    return list(names)


def encode_directory_header(
    spec: VolumeSpec, block_files: list[str], index: np.ndarray, page_entries: int = PAGE_ENTRIES
) -> bytes:
    """Everything of a version 2.1.0 directory file before its index ``index``."""
    if index.dtype != INDEX_DTYPE or len(index) != spec.grid.n_blocks:
        raise FormatError(f"index must be {spec.grid.n_blocks} entries of {INDEX_DTYPE}")
    md = spec.to_dict()
    md["BlockFiles"] = _check_names("new directory", list(block_files), relative=True)
    md["IndexPageEntries"] = page_entries
    return _header_with_table(md, page_checksums(np.asarray(index), page_entries))


def _header_with_table(md: dict[str, Any], page_crcs: np.ndarray) -> bytes:
    body = _padded_json(md, _HEADER.size)
    table_end = _HEADER.size + len(body) + _CRC.size + 4 * len(page_crcs)
    head = _HEADER.pack(MAGIC, len(body), _align8(table_end)) + body
    table = np.asarray(page_crcs, "<u4").tobytes()
    return head + _CRC.pack(checksum(head)) + table + bytes(_align8(table_end) - table_end)


def encode_fragment_header(spec: VolumeSpec, batch: dict[str, Any] | None = None) -> bytes:
    """Header of a fragment or journal file for a volume of ``spec``.

    ``batch`` (a fragment's optional "Batch" key) says what the batch covers,
    so that a changed plan is not mistaken for a finished batch.
    """
    md = spec.to_dict()
    if batch is not None:
        md["Batch"] = batch
    body = _padded_json(md, _HEADER.size)
    head = _HEADER.pack(FRAGMENT_MAGIC, len(body), _HEADER.size + len(body) + 8) + body
    return head + _CRC.pack(checksum(head)) + bytes(4)


def encode_entry(position: int, file: int, offset: int, size: int, crc: int) -> bytes:
    """One 32-byte fragment entry, its own checksum included."""
    head = _ENTRY_STRUCT.pack(position, offset, size, file, crc)
    return head + checksum(head).to_bytes(4, "little")


# --------------------------------------------------------------------- reading
def _read_header(path: str, fd_bytes: bytes, magic: bytes, what: str) -> tuple[int, int]:
    if len(fd_bytes) < _HEADER.size:
        raise TruncatedFileError(f"{path}: {len(fd_bytes)} bytes is too short for a {what} header")
    got, md_size, data_offset = _HEADER.unpack_from(fd_bytes)
    if got != magic:
        raise FormatError(f"{path} is not a {what}: it starts with {got!r}, expected {magic!r}")
    return md_size, data_offset


def _parse_json(path: str, raw: bytes, what: str) -> dict[str, Any]:
    try:
        md = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"{path}: {what} is not valid JSON: {str(e)[:200]}") from e
    if not isinstance(md, dict):
        raise FormatError(f"{path}: {what} is not a JSON object")
    return md


def _read_exactly(f: BinaryIO, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise TruncatedFileError(f"{path}: {what} is cut short ({len(data)} of {n} bytes)")
    return data


def _check_entries(where: str, entries: np.ndarray, n_files: int, max_frame: int, first: int = 0) -> None:
    """Raise unless every present entry names a listed block file and a plausible byte range."""
    present = entries["file"] != 0
    bad = present & (
        (entries["file"] > n_files) | (entries["offset"] >= _MAX_OFFSET) | (entries["size"] > max_frame)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        e = entries[i]
        raise FormatError(
            f"{where}: the entry of block position {first + i} (file {int(e['file'])}, offset {int(e['offset'])}, "
            f"size {int(e['size'])}) names no block file of the {n_files} listed or no possible frame "
            f"(at most {max_frame} bytes)"
        )


def _max_frame(spec: VolumeSpec) -> int:
    """The largest frame a block of ``spec`` can have, capped at the u32 size field's range."""
    bz, by, bx = spec.grid.block_shape
    return min(spec.codec.max_frame_size(bz * by * bx * spec.dtype.itemsize), (1 << 32) - 2)


def read_directory(path: str | os.PathLike[str], mmap_threshold: int | None = None) -> DirectoryContents:
    """Read a directory file of any known format version, checking what it can.

    Every byte comes from one open file, so a directory replaced meanwhile is
    never read half old, half new. An index larger than ``mmap_threshold``
    bytes (default :data:`MMAP_THRESHOLD`) is memory-mapped
    (:class:`PagedIndex`), so opening costs the same
    whatever the volume's size. Malformed input raises a :class:`FormatError`
    (never more memory than the file's size justifies).
    """
    path = os.fspath(path)
    if mmap_threshold is None:
        mmap_threshold = MMAP_THRESHOLD
    try:
        f = open(path, "rb")
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such blockfs directory file") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER.size)
        md_size, index_offset = _read_header(path, head, MAGIC, "blockfs directory file")
        if md_size > size - _HEADER.size:
            raise TruncatedFileError(f"{path}: metadata is cut short ({size - _HEADER.size} of {md_size} bytes)")
        raw_md = _read_exactly(f, md_size, path, "metadata")
        md = _parse_json(path, raw_md, "metadata")
        version = md.get("Version")
        if version == VERSION:
            return _read_v21(path, f, size, head + raw_md, md, index_offset, mmap_threshold)
        if version == VERSION_2_0:
            return _read_v20(path, f, size, md_size, md, index_offset, mmap_threshold)
        if version == VERSION_1:
            return _read_v1(path, f, size, md, index_offset)
    raise UnsupportedVersionError(
        f"{path}: format version {version!r:.40}; this reader knows {', '.join(KNOWN_VERSIONS)}"
    )


def _index_size_check(path: str, size: int, index_offset: int, n: int) -> None:
    expected = index_offset + n * INDEX_DTYPE.itemsize
    if size < expected:
        raise TruncatedFileError(f"{path}: directory is truncated: {size} bytes, expected {expected}")
    if size > expected:
        raise FormatError(f"{path}: {size - expected} unexpected bytes after the index")


def _read_v21(
    path: str, f: BinaryIO, size: int, head: bytes, md: dict[str, Any], index_offset: int, mmap_threshold: int
) -> DirectoryContents:
    stored_crc = _CRC.unpack(_read_exactly(f, _CRC.size, path, "header checksum"))[0]
    if len(head) % 8 or stored_crc != checksum(head):
        raise CorruptIndexError(f"{path}: the header and JSON metadata do not match their CRC-32C (corrupt)")
    spec = VolumeSpec.from_dict(md, path)
    names = _check_names(path, md.get("BlockFiles"), relative=True)
    page_entries = md.get("IndexPageEntries")
    if isinstance(page_entries, bool) or not isinstance(page_entries, int) or not 1 <= page_entries <= 1 << 30:
        raise FormatError(f"{path}: expected IndexPageEntries from 1 to 2**30. Got {page_entries!r:.40} instead.")
    n = spec.grid.n_blocks
    n_pages = -(-n // page_entries)
    table_at = len(head) + _CRC.size
    if index_offset != _align8(table_at + 4 * n_pages):
        raise FormatError(f"{path}: the index starts at {index_offset}, expected {_align8(table_at + 4 * n_pages)}")
    _index_size_check(path, size, index_offset, n)
    table = _read_exactly(f, index_offset - table_at, path, "index page table")
    if any(table[4 * n_pages :]):
        raise FormatError(f"{path}: the padding after the index page table is not zero")
    page_crcs = np.frombuffer(table, "<u4", count=n_pages)
    return DirectoryContents(
        VERSION, spec, names, _read_index(path, f, spec, names, index_offset, page_entries, page_crcs, mmap_threshold),
        True, True,
    )


def _read_v20(
    path: str, f: BinaryIO, size: int, md_size: int, md: dict[str, Any], index_offset: int, mmap_threshold: int
) -> DirectoryContents:
    spec = VolumeSpec.from_dict(md, path)
    names = _check_names(path, md.get("BlockFiles", []), relative=True)
    crc = md.get("IndexCRC32C")
    if isinstance(crc, bool) or not isinstance(crc, int) or not 0 <= crc < 1 << 32:
        raise FormatError(f"{path}: expected IndexCRC32C, a 32-bit integer. Got {crc!r:.40} instead.")
    if index_offset != _HEADER.size + md_size:
        raise FormatError(f"{path}: the index starts at {index_offset}, expected {_HEADER.size + md_size}")
    n = spec.grid.n_blocks
    _index_size_check(path, size, index_offset, n)
    index = _read_index(path, f, spec, names, index_offset, n, np.array([crc], "<u4"), mmap_threshold)
    return DirectoryContents(VERSION_2_0, spec, names, index, True, False)


def _read_index(
    path: str,
    f: BinaryIO,
    spec: VolumeSpec,
    names: list[str],
    index_offset: int,
    page_entries: int,
    page_crcs: np.ndarray,
    mmap_threshold: int,
) -> np.ndarray | PagedIndex:
    """Read and check a 2.x index, or map it for checking page by page (sizes already checked)."""
    n = spec.grid.n_blocks
    if n * INDEX_DTYPE.itemsize > mmap_threshold:
        mapped = np.memmap(f, INDEX_DTYPE, mode="r", offset=index_offset, shape=(n,))
        return PagedIndex(path, mapped, page_entries, page_crcs, len(names), _max_frame(spec))
    f.seek(index_offset)
    index = np.fromfile(f, INDEX_DTYPE, count=n)
    if len(index) != n:
        raise TruncatedFileError(f"{path}: the index is cut short")
    checked = PagedIndex(path, index, page_entries, page_crcs, len(names), _max_frame(spec))
    checked.check_all()
    return index


def _v1_int(md: dict[str, Any], key: str) -> int:
    value = md[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"expected {key} to be an integer. Got {value!r:.40} instead.")
    return value


def _check_v1_strides(path: str, strides: tuple[int, int, int], grid_xyz: tuple[int, int, int]) -> list[int]:
    """Axes (0 = x) whose stride matters, largest stride first; raise if two blocks share an entry.

    An axis with one block never multiplies its stride. The others, sorted by
    stride, must each step over every entry the smaller ones reach (mixed
    radix, as the original wrote x fastest, then y, then z).
    """
    axes = sorted((a for a in range(3) if grid_xyz[a] > 1), key=lambda a: strides[a])
    reach = 0
    for a in axes:
        if strides[a] <= reach:
            raise FormatError(
                f"{path}: format 1.0.0 strides (x, y, z) {strides} map two blocks onto one entry "
                f"(blocks per axis {grid_xyz}): each must be at least 1 and exceed what the smaller ones reach"
            )
        reach += strides[a] * (grid_xyz[a] - 1)
    return axes[::-1]


def _read_v1(path: str, f: BinaryIO, size: int, md: dict[str, Any], index_offset: int) -> DirectoryContents:
    """Decode an original blockfs 1.0.0 directory into the version 2 index layout.

    Works from the stored entries (memory in proportion to the file), and
    refuses a grid far larger than the file could describe.
    """
    try:
        grid = BlockGrid(
            (md["XExtent"], md["YExtent"], md["ZExtent"]),
            (md["XBlockSize"], md["YBlockSize"], md["ZBlockSize"]),
        )
        codec = BlockCodec(md["Compression"], md["CompressionLvl"])
        app = {k: v for k, v in md.items() if k not in _V1_KEYS}
        spec = VolumeSpec(grid, _dtype(md["DType"]), codec, app)
        names = _check_names(path, md["BlockFilenames"], relative=False)
        n_offset_bits, n_size_bits = _v1_int(md, "NOffsetBits"), _v1_int(md, "NSizeBits")
        strides = (_v1_int(md, "XStride"), _v1_int(md, "YStride"), _v1_int(md, "ZStride"))
    except KeyError as e:
        raise FormatError(f"{path}: format 1.0.0 metadata lacks the key {e.args[0]!r}") from e
    except FormatError as e:
        raise type(e)(f"{path}: invalid format 1.0.0 metadata: {e}") from e
    except (TypeError, ValueError) as e:
        raise FormatError(f"{path}: invalid format 1.0.0 metadata: {e}") from e
    entry_size = (n_offset_bits + n_size_bits + 7) // 8
    if not names or not 1 <= entry_size <= 8 or n_offset_bits < 0 or n_size_bits < 1:
        raise FormatError(f"{path}: format 1.0.0 metadata with no block files or entries over 64 bits")
    gz, gy, gx = grid.grid_shape
    axes = _check_v1_strides(path, strides, (gx, gy, gz))
    n_stored = max(size - index_offset, 0) // entry_size if index_offset >= _HEADER.size else 0
    n = grid.n_blocks
    if n * INDEX_DTYPE.itemsize > _V1_INDEX_ALLOWANCE and n > 16 * n_stored:
        raise FormatError(
            f"{path}: format 1.0.0 directory of {size} bytes ({n_stored} entries) claims {n} blocks; "
            f"refusing to index a grid that much larger than its file"
        )
    f.seek(index_offset)
    raw = np.fromfile(f, np.uint8, count=n_stored * entry_size).reshape(-1, entry_size)
    value = np.zeros(len(raw), np.uint64)
    for b in range(entry_size):
        value |= raw[:, b].astype(np.uint64) << np.uint64(8 * b)
    offset = value & np.uint64((1 << n_offset_bits) - 1) if n_offset_bits < 64 else value
    block_size = (value >> np.uint64(n_offset_bits)) if n_offset_bits < 64 else np.zeros_like(value)
    slots = np.flatnonzero(block_size)
    rest, coords = slots.astype(np.int64), {}
    for a in axes:  # mixed-radix decode of the slot into block coordinates
        if strides[a] >= 1 << 62:  # beyond any stored entry: coordinate 0
            coords[a] = np.zeros_like(rest)
            continue
        coords[a] = rest // strides[a]
        rest = rest - coords[a] * strides[a]
    counts = (gx, gy, gz)
    valid = rest == 0
    for a, c in coords.items():
        valid &= c < counts[a]
    slots = slots[valid]
    ix, iy, iz = (coords[a][valid] if a in coords else np.zeros(len(slots), np.int64) for a in range(3))
    positions = (iz * gy + iy) * gx + ix
    index = np.zeros(n, INDEX_DTYPE)
    # An implausible size or offset (no checksum says which bytes are wrong) is
    # clipped so that reading that block fails to decode instead of allocating.
    max_frame = _max_frame(spec)
    index["offset"][positions] = np.minimum(offset[slots], np.uint64(_MAX_OFFSET - 1))
    index["size"][positions] = np.minimum(block_size[slots], np.uint64(max_frame + 1))
    index["file"][positions] = slots % len(names) + 1
    return DirectoryContents(VERSION_1, spec, names, index, False)


# ------------------------------------------------------------------- fragments
@dataclass
class Fragment:
    """A fragment or journal as read: the spec it was written for and its valid entries."""

    spec: VolumeSpec
    entries: np.ndarray  # ENTRY_DTYPE, commit order
    dropped: int  # torn or corrupt entries left out


def _fragment_head(path: str, data: bytes) -> tuple[VolumeSpec, dict[str, Any], int]:
    """Spec, JSON and entries' offset of a fragment whose first bytes are ``data`` (header CRC checked)."""
    md_size, start = _read_header(path, data, FRAGMENT_MAGIC, "blockfs fragment file")
    if md_size > len(data) - _HEADER.size:
        raise TruncatedFileError(f"{path}: fragment header is cut short")
    head = data[: _HEADER.size + md_size]
    md = _parse_json(path, head[_HEADER.size :], "fragment spec")
    version = md.get("Version")
    if version == VERSION:
        expected = len(head) + 8
        if len(head) % 8 or len(data) < expected or _CRC.unpack_from(data, len(head))[0] != checksum(head):
            raise CorruptIndexError(f"{path}: the fragment header does not match its CRC-32C (corrupt)")
        if any(data[len(head) + _CRC.size : expected]):
            raise FormatError(f"{path}: the padding after the fragment header is not zero")
    elif version == VERSION_2_0:
        expected = len(head)
    else:
        raise UnsupportedVersionError(
            f"{path}: fragment of format version {version!r:.40}; this reader knows {VERSION_2_0}, {VERSION}"
        )
    if start != expected:
        raise FormatError(f"{path}: fragment entries start at {start}, expected {expected}")
    return VolumeSpec.from_dict(md, path), md, start


def read_fragment_header(path: str) -> tuple[VolumeSpec, dict[str, Any] | None]:
    """The volume spec and "Batch" of a fragment, reading only its header (cheap, bounded)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEADER.size)
            md_size, _ = _read_header(path, head, FRAGMENT_MAGIC, "blockfs fragment file")
            data = head + f.read(min(md_size, size) + 8)
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such fragment file") from e
    spec, md, _ = _fragment_head(path, data)
    return spec, md.get("Batch")


def read_fragment(path: str, strict: bool = True) -> Fragment:
    """Read a fragment file; ``strict`` makes any torn or corrupt entry an error.

    A journal is read with ``strict=False``: a writer killed mid-append leaves
    a torn last entry, which is dropped, not an error. A corrupt header is an
    error either way.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such fragment file") from e
    spec, _, start = _fragment_head(path, data)
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
    ok &= (entries["position"] < spec.grid.n_blocks) & (entries["offset"] < _MAX_OFFSET)
    ok &= entries["size"] <= _max_frame(spec)
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


# ------------------------------------------------------------ metadata rewrite
def rewrite_metadata(
    src: str,
    dest: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
    chunk_size: int = 1 << 20,
) -> None:
    """Write ``src`` to ``dest`` with its JSON metadata passed through ``update``.

    The source is checked first (a corrupt header is never given a fresh
    checksum). The index bytes (and a 2.1.0 page table) are copied unchanged,
    ``chunk_size`` bytes at a time, and ``dest`` is published atomically (it
    may be ``src`` itself) only if it has exactly the length it must have.
    Each format version keeps its own header layout.
    """
    from .atomic import published

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"Expected a chunk size of at least 1 byte. Got {chunk_size!r} instead.")
    contents = read_directory(src)
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        md_size, index_offset = _read_header(src, f.read(_HEADER.size), MAGIC, "blockfs directory file")
        md = _parse_json(src, _read_exactly(f, md_size, src, "metadata"), "metadata")
        if md.get("Version") != contents.version:
            raise FormatError(f"{src} changed while it was being rewritten")
        md = update(md)
        if contents.version == VERSION:
            table_at = _HEADER.size + md_size + _CRC.size
            n_pages = -(-contents.spec.grid.n_blocks // md["IndexPageEntries"])
            f.seek(table_at)
            head = _header_with_table(md, np.frombuffer(_read_exactly(f, 4 * n_pages, src, "page table"), "<u4"))
        else:
            raw = json.dumps(md).encode("utf-8")
            body = raw if contents.version == VERSION_1 else _padded_json(md, _HEADER.size)
            head = _HEADER.pack(MAGIC, len(body), _HEADER.size + len(body)) + body
        expected = len(head) + size - index_offset
        f.seek(index_offset)
        with published(dest) as tmp, open(tmp, "wb") as out:
            out.write(head)
            while chunk := f.read(chunk_size):
                out.write(chunk)
            out.flush()
            if out.tell() != expected:
                raise TruncatedFileError(f"{dest}: the rewritten directory has {out.tell()} bytes, expected {expected}")
