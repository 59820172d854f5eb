"""Block codecs: the codec registry, Blosc compression of (z, y, x) arrays and the block checksum.

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
:func:`codec_from_dict` reads that record and names an id it does not know,
:func:`make_codec` builds a codec from a compression name (what ``Directory``,
the tools and the tasks accept). Every codec follows :class:`Codec`: the
Blosc one is here, the float codecs are in :mod:`.codecs`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

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


@runtime_checkable
class Codec(Protocol):
    """What every block codec offers; ``compression`` is the name a user picks it by."""

    @property
    def compression(self) -> str:
        """The name a user picks the codec by ("zstd", "fpzip"...)."""
        ...

    @property
    def level(self) -> int:
        """Its level."""
        ...

    @property
    def shuffle(self) -> int:
        """Blosc shuffle (0 for the float codecs)."""
        ...

    def encode(self, array: np.ndarray) -> bytes:
        """One frame of a C-contiguous (z, y, x) array."""
        ...

    def decode(
        self, data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The array of one frame (into ``out`` if given); FormatError for a frame that is not one."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The codec record of format 2.1.0 (id, parameters, and "loss" for a lossy codec)."""
        ...

    def max_frame_size(self, nbytes: int) -> int:
        """The largest frame a block of ``nbytes`` raw bytes can have."""
        ...

    def check_dtype(self, dtype: np.dtype) -> None:
        """Raise ConfigurationError when this codec cannot store ``dtype``."""
        ...

    @property
    def loss(self) -> dict[str, float]:
        """The loss bound ({} when lossless): "max_abs_error" and/or "max_rel_error"."""
        ...


SHUFFLES = {0: "none", 1: "byte", 2: "bit"}


@dataclass(frozen=True)
class BlockCodec:
    """Blosc settings of a volume: compressor name, level 0-9, shuffle 0 (none), 1 (byte) or 2 (bit).

    ``shuffle`` also takes True/False (byte shuffle or none), as before.
    """

    compression: str = "zstd"
    level: int = 5
    shuffle: int = 1

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
        object.__setattr__(self, "shuffle", check_shuffle(self.shuffle))

    @property
    def loss(self) -> dict[str, float]:
        """Blosc is lossless."""
        return {}

    def check_dtype(self, dtype: np.dtype) -> None:
        """Blosc stores every supported dtype."""

    def to_dict(self) -> dict[str, Any]:
        """The codec record of format 2.1.0: id "blosc" and its parameters."""
        return {"id": BLOSC_ID, "cname": self.compression, "clevel": self.level, "shuffle": self.shuffle}

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
            shuffle=self.shuffle,
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


def check_shuffle(shuffle: Any) -> int:
    """``shuffle`` as 0 (none), 1 (byte) or 2 (bit); True/False mean 1/0."""
    if isinstance(shuffle, bool):
        return int(shuffle)
    if isinstance(shuffle, (int, np.integer)) and int(shuffle) in SHUFFLES:
        return int(shuffle)
    raise ConfigurationError(f"Expected shuffle 0 (none), 1 (byte) or 2 (bit). Got {short_repr(shuffle)} instead.")


BLOSC_ID = "blosc"
_BLOSC_PARAMETERS = {"id", "cname", "clevel", "shuffle"}


def make_codec(
    compression: str | Compression = "zstd",
    level: int | None = None,
    shuffle: Any = 1,
    bitround_keepbits: int | None = None,
) -> Codec:
    """The codec a user names: a Blosc compressor or a float codec of :mod:`.codecs`.

    ``level`` is the Blosc level (0-9, default 5) or the float codec's (pcodec
    0-12, default 8; fpzip and kempressed have none and ignore it);
    ``shuffle`` applies to Blosc only. ``bitround_keepbits`` puts the lossy
    BitRound filter (float data, that many mantissa bits) before the codec.
    """
    if isinstance(compression, Compression):
        compression = compression.name
    codec: Codec
    if isinstance(compression, str) and compression not in Compression.__members__:
        from .codecs import registry

        if compression not in registry.CODECS:
            raise ConfigurationError(
                f"Expected a compression in {known_compressions()}. Got {short_repr(compression)} instead."
            )
        codec = registry.CODECS[compression].from_level(level)
    else:
        codec = BlockCodec(compression, 5 if level is None else level, shuffle)
    if bitround_keepbits is not None:
        from .codecs.bitround import BitRound

        codec = BitRound(codec, bitround_keepbits)
    return codec


def known_compressions() -> list[str]:
    """Every compression name :func:`make_codec` accepts here."""
    from .codecs import registry

    return [*available_compressors(), *registry.CODECS]


def codec_from_dict(record: Any) -> Codec:
    """The codec of a format 2.1.0 ``Codec`` record, or raise naming what is unknown.

    Raises :class:`UnsupportedCodecError` for a codec id (or a parameter) this
    reader does not know, :class:`FormatError` for a record that is not one,
    or whose "loss" is not the bound its parameters give (a lossy codec's
    record must carry it; a lossless one's has none).
    """
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise FormatError(
            f"Expected the codec as a JSON object with a string \"id\". Got {short_repr(record)} instead."
        )
    codec = _codec_of(record)
    if "bitround_keepbits" in record:
        from .codecs.bitround import BitRound

        try:
            codec = BitRound(codec, record["bitround_keepbits"])
        except ConfigurationError as e:
            raise FormatError(f"codec {record['id']!r}: {e}") from e
    if record.get("loss", {}) != codec.loss:
        raise FormatError(
            f"codec {record['id']!r}: the record says the loss is {short_repr(record.get('loss'))}, "
            f"its parameters give {codec.loss}"
        )
    return codec


def _codec_of(record: dict[str, Any]) -> Codec:
    """The codec of a record's id and parameters, its loss bound and BitRound aside."""
    record = {k: v for k, v in record.items() if k not in ("loss", "bitround_keepbits")}
    codec_id = record["id"]
    if codec_id != BLOSC_ID:
        from .codecs import registry

        return registry.from_dict(record)
    unknown = sorted(set(record) - _BLOSC_PARAMETERS)
    if unknown:
        raise UnsupportedCodecError(f"codec {BLOSC_ID!r} with unknown parameters {short_repr(unknown)}")
    shuffle = record.get("shuffle", 1)
    if isinstance(shuffle, bool) or shuffle not in SHUFFLES:
        raise UnsupportedCodecError(
            f"codec {BLOSC_ID!r}: expected shuffle 0 (none), 1 (byte) or 2 (bit). Got {short_repr(shuffle)} instead."
        )
    try:
        cname: Any = record.get("cname")  # checked by BlockCodec: a missing one is an error there
        clevel: Any = record.get("clevel")
        return BlockCodec(cname, clevel, int(shuffle))
    except (ConfigurationError, TypeError) as e:
        raise FormatError(f"codec {BLOSC_ID!r}: {e}") from e


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
