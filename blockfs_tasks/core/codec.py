"""Block codecs: Blosc compression of (z, y, x) arrays and the block checksum.

Encoding uses c-blosc through imagecodecs (one thread per call, the caller
parallelises); decoding uses numcodecs. Both are c-blosc 1.x: the frames are
the same format, and any Blosc1 reader decodes them.

The codec contract is small: ``codec.encode(array) -> bytes`` stores a
C-ordered array as one Blosc1 frame; ``BlockCodec.decode(data, dtype, shape,
out=None) -> array`` gives it back (a static method: the frame header says how
it was compressed), into ``out`` when a caller reuses one buffer.
The frame is what both format versions store, so blocks written by the original
blockfs decode here unchanged. Blosc frames carry no checksum, so the index keeps
a CRC-32C of the stored bytes (:func:`checksum`).

Format 2.1.0 records the codec as an id and its parameters
(``{"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1}``);
:func:`codec_from_dict` reads that record and names an id it does not know.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, cast

import google_crc32c
import imagecodecs
import numpy as np
from numcodecs import blosc
from numpy.typing import DTypeLike

from .checks import check_level
from .errors import ConfigurationError, FormatError, UnsupportedCodecError


class Compression(enum.Enum):
    """Blosc compressor names; the values are those of the original blockfs."""

    zstd = 1
    blosclz = 2
    lz4 = 3
    lz4hc = 4
    zlib = 5
    snappy = 6


# Blosc1 frame header: version, versionlz, flags, typesize (4 x u8), then
# u32 nbytes (raw), u32 blocksize, u32 cbytes (whole frame), little-endian.
_BLOSC_HEADER = struct.Struct("<4xIII")
_BLOSC_MAX_OVERHEAD = 16

SUPPORTED_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "uint8", "uint16", "uint32", "uint64",
        "int8", "int16", "int32", "int64",
        "float32", "float64",
    )
)


def available_compressors() -> list[str]:
    """Blosc compressors this installation can encode with."""
    return list(blosc.list_compressors())


def checksum(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data`` (any contiguous buffer), hardware accelerated where possible."""
    return int(google_crc32c.value(data))


def check_dtype(dtype: DTypeLike) -> np.dtype:
    """Return ``dtype`` as a numpy dtype, or raise if blockfs cannot store it."""
    try:
        result = np.dtype(dtype)
    except TypeError as e:
        raise ConfigurationError(f"Expected a numpy dtype. Got {dtype!r} instead.") from e
    if result.newbyteorder("=") not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise ConfigurationError(f"Expected one of the dtypes {names}. Got {result} instead.")
    return result


@dataclass(frozen=True)
class BlockCodec:
    """Blosc settings of a volume: compressor name, level 0-9, byte shuffle."""

    compression: str = "zstd"
    level: int = 5
    shuffle: bool = True

    def __post_init__(self) -> None:
        name = self.compression
        if isinstance(name, Compression):
            object.__setattr__(self, "compression", name.name)
            name = name.name
        if name not in Compression.__members__:
            raise ConfigurationError(
                f"Expected a compression in {available_compressors()} (the Blosc compressors built "
                f"here). Got {name!r} instead."
            )
        object.__setattr__(self, "level", check_level(self.level))

    def to_dict(self) -> dict[str, Any]:
        """The codec record of format 2.1.0: id "blosc" and its parameters."""
        return {"id": BLOSC_ID, "cname": self.compression, "clevel": self.level, "shuffle": int(self.shuffle)}

    @staticmethod
    def max_frame_size(nbytes: int) -> int:
        """The largest frame a block of ``nbytes`` raw bytes can have (Blosc1 adds at most 16)."""
        return nbytes + _BLOSC_MAX_OVERHEAD

    def encode(self, array: np.ndarray) -> bytes:
        """Compress a C-contiguous array into one Blosc frame."""
        if self.compression not in available_compressors():
            raise ConfigurationError(
                f"The Blosc compressor {self.compression!r} is not available in this "
                f"installation; available: {available_compressors()}."
            )
        array = np.ascontiguousarray(array)
        # One thread per call: callers compress many blocks in parallel (threads
        # or processes). numcodecs would use Blosc's global thread pool in a
        # main thread, which costs ~60% more CPU per block for no gain in that case.
        return cast(bytes, imagecodecs.blosc_encode(  # the stub says bytes; it returns bytes
            array,  # type: ignore[arg-type]  # the stub lists buffers only; any C-contiguous array works
            level=self.level,
            compressor=self.compression,
            shuffle=1 if self.shuffle else 0,
            typesize=array.dtype.itemsize,
            numthreads=1,
        ))

    @staticmethod
    def decode(
        data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """Decompress one Blosc frame into ``out`` or a new array of ``shape``.

        Any Blosc frame decodes, whatever compressor wrote it, so this needs no
        settings: the frame header carries them. ``out`` (C-contiguous, of
        ``shape`` and ``dtype``) lets a caller reuse one buffer for many blocks.
        """
        if out is None:
            out = np.empty(shape, dtype)
        if len(data) < _BLOSC_HEADER.size:
            raise FormatError(f"{len(data)} bytes is too short for a Blosc frame")
        nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(data)
        if cbytes != len(data) or nbytes != out.nbytes:
            raise FormatError(
                f"Blosc frame of {len(data)} bytes says it holds {cbytes} compressed and "
                f"{nbytes} raw bytes; expected {len(data)} and {out.nbytes} "
                f"(shape {shape}, dtype {np.dtype(dtype)})"
            )
        try:
            blosc.decompress(data, out)
        except Exception as e:
            raise FormatError(f"corrupt Blosc frame ({len(data)} bytes)") from e
        return out


BLOSC_ID = "blosc"
_BLOSC_PARAMETERS = {"id", "cname", "clevel", "shuffle"}


def codec_from_dict(record: Any) -> BlockCodec:
    """The codec of a format 2.1.0 ``Codec`` record, or raise naming what is unknown.

    Raises :class:`UnsupportedCodecError` for a codec id (or a parameter) this
    reader does not know, :class:`FormatError` for a record that is not one.
    """
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise FormatError(f"Expected the codec as a JSON object with a string \"id\". Got {_short(record)} instead.")
    codec_id = record["id"]
    if codec_id != BLOSC_ID:
        raise UnsupportedCodecError(f"unknown codec id {_short(codec_id)}; this reader knows {[BLOSC_ID]}")
    unknown = sorted(set(record) - _BLOSC_PARAMETERS)
    if unknown:
        raise UnsupportedCodecError(f"codec {BLOSC_ID!r} with unknown parameters {_short(unknown)}")
    shuffle = record.get("shuffle", 1)
    if isinstance(shuffle, bool) or shuffle not in (0, 1):
        raise UnsupportedCodecError(
            f"codec {BLOSC_ID!r}: expected shuffle 0 (none) or 1 (byte). Got {_short(shuffle)} instead."
        )
    try:
        cname: Any = record.get("cname")  # checked by BlockCodec: a missing one is an error there
        clevel: Any = record.get("clevel")
        return BlockCodec(cname, clevel, bool(shuffle))
    except (ConfigurationError, TypeError) as e:
        raise FormatError(f"codec {BLOSC_ID!r}: {e}") from e


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
