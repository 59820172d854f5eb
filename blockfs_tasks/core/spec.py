"""What a volume is (:class:`VolumeSpec`) and the format's constants and byte-level primitives.

The format itself is specified in the docstring of :mod:`.format`; this
module holds what every reader and writer of it shares: magic numbers,
versions, the index and entry layouts, and the small header and JSON
readers.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .checks import check_int
from .codec import SUPPORTED_DTYPES, BlockCodec, Codec, check_dtype, codec_from_dict
from .errors import FormatError, TruncatedFileError
from .grid import BlockGrid

if TYPE_CHECKING:
    from .paged_index import PagedIndex

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
ENTRY_STRUCT = struct.Struct("<QQIII")
HEADER = struct.Struct("<8sII")
CRC = struct.Struct("<I")
MAX_OFFSET = 1 << 62  # no block file is larger; keeps pread offsets in range

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


@contextmanager
def metadata_errors(source: str, what: str = "metadata", label_format_errors: bool = False) -> Iterator[None]:
    """Turn what reading stored metadata raises (a missing key, a wrong type) into FormatErrors naming ``source``.

    A FormatError raised inside keeps its class and gets ``source`` (and, with
    ``label_format_errors``, "invalid <what>") in front of its message.
    """
    try:
        yield
    except KeyError as e:
        raise FormatError(f"{source}: {what} lacks the key {e.args[0]!r}") from e
    except FormatError as e:
        raise type(e)(f"{source}: invalid {what}: {e}" if label_format_errors else f"{source}: {e}") from e
    except (TypeError, ValueError) as e:
        raise FormatError(f"{source}: invalid {what}: {e}") from e


@dataclass(frozen=True)
class VolumeSpec:
    """What a volume is: its grid, dtype, codec and application metadata."""

    grid: BlockGrid
    dtype: np.dtype
    codec: Codec = field(default_factory=BlockCodec)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype).newbyteorder("<"))
        self.codec.check_dtype(self.dtype)

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
        with metadata_errors(source):
            grid = BlockGrid(
                (d["XExtent"], d["YExtent"], d["ZExtent"]),
                (d["XBlockSize"], d["YBlockSize"], d["ZBlockSize"]),
            )
            codec: Codec
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
            return cls(grid, dtype_from_name(d["DType"]), codec, metadata)

    def same_volume(self, other: VolumeSpec) -> bool:
        """True when both describe the same grid, dtype and codec."""
        return (self.grid, self.dtype, self.codec) == (other.grid, other.dtype, other.codec)


def dtype_from_name(name: Any) -> np.dtype:
    """The numpy dtype of a stored DType name; only the names blockfs writes are accepted."""
    if not isinstance(name, str) or name not in _DTYPE_NAMES:
        raise FormatError(f"Expected DType in {sorted(_DTYPE_NAMES)}. Got {name!r:.40} instead.")
    return np.dtype(name)


def max_frame_size(spec: VolumeSpec) -> int:
    """The largest frame a block of ``spec`` can have, capped at the u32 size field's range."""
    bz, by, bx = spec.grid.block_shape
    return min(spec.codec.max_frame_size(bz * by * bx * spec.dtype.itemsize), (1 << 32) - 2)


@dataclass
class DirectoryContents:
    """A directory file as read: spec, block file names and the index."""

    version: str
    spec: VolumeSpec
    block_files: list[str]
    index: np.ndarray | PagedIndex  # INDEX_DTYPE, one entry per position; file 0 = absent
    has_checksums: bool  # blocks carry CRC-32Cs
    metadata_checked: bool = False  # header and metadata carry a CRC-32C (2.1.0)


def align8(n: int) -> int:
    return n + (-n % 8)


def padded_json(obj: dict[str, Any], start: int) -> bytes:
    raw = json.dumps(obj).encode("utf-8")
    return raw + b" " * (-(start + len(raw)) % 8)


def read_header(path: str, fd_bytes: bytes, magic: bytes, what: str) -> tuple[int, int]:
    if len(fd_bytes) < HEADER.size:
        raise TruncatedFileError(f"{path}: {len(fd_bytes)} bytes is too short for a {what} header")
    got, md_size, data_offset = HEADER.unpack_from(fd_bytes)
    if got != magic:
        raise FormatError(f"{path} is not a {what}: it starts with {got!r}, expected {magic!r}")
    return md_size, data_offset


def parse_json(path: str, raw: bytes, what: str) -> dict[str, Any]:
    try:
        md = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"{path}: {what} is not valid JSON: {str(e)[:200]}") from e
    if not isinstance(md, dict):
        raise FormatError(f"{path}: {what} is not a JSON object")
    return md


def read_exactly(f: BinaryIO, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise TruncatedFileError(f"{path}: {what} is cut short ({len(data)} of {n} bytes)")
    return data

def read_array(f: BinaryIO, dtype: np.dtype, count: int) -> np.ndarray:
    """Up to ``count`` items of ``dtype`` from ``f``'s position: ``np.fromfile`` for a real file, else via bytes."""
    try:
        f.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        data = f.read(count * dtype.itemsize)
        return np.frombuffer(data[: len(data) - len(data) % dtype.itemsize], dtype).copy()
    return np.fromfile(f, dtype, count=count)


def stored_int(path: str, md: dict[str, Any], key: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """The integer ``md[key]`` of a stored header, within [minimum, maximum]; else a FormatError naming ``path``."""
    try:
        return check_int(md.get(key), key, minimum, maximum, FormatError)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None


def check_names(path: str, names: Any, relative: bool) -> list[str]:
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
