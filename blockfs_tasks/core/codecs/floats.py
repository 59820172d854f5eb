"""Float codecs: fpzip and pcodec (lossless), kempressed (CloudVolume's fpzip transform, near-lossless).

All three store float32 and float64 volumes only (an integer dtype is a clear
ConfigurationError) and need the ``float`` extra (``pip install
'blockfs_tasks[float]'``: the ``fpzip`` and ``pcodec`` packages).

fpzip
    ``fpzip.compress`` of the C-ordered (z, y, x) block (precision 0 =
    lossless). Its header names (nx, ny, nz, nf) = (x, y, z, 1), which is
    exactly a CloudVolume ``fpzip`` chunk (x, y, z, channel in Fortran
    order), so ``blockfs-precomputed --encoding fpzip`` copies these frames.
pcodec
    ``pcodec.standalone.simple_compress`` of the flattened block: the frame
    numcodecs' and zarr's ``pcodec`` codec read. Levels 0-12 (default 8).
kempressed
    CloudVolume's "kempressed": 2.0 is added to data in [0, 1] (in the
    volume's dtype) and the block is fpzip-compressed with z outermost and as
    fpzip's field axis: C order (z, 1, y, x), i.e. the chunk (x, y, 1, z) of
    CloudVolume's encoder, byte for byte what its decoder reads. Rounding
    ``x + 2`` loses at most one machine epsilon of the dtype (absolute error
    <= 2**-23 for float32, 2**-52 for float64; ``x - 2`` back is exact). Data
    outside [0, 1] (or NaN) is refused.

fpzip's decoder takes no length: it reads past the end of a truncated or
corrupt frame (a crash, not an error). Readers decode a frame only after its
CRC-32C matched the index (every 2.1.0 reader does; 1.0.0 volumes, which have
no CRCs, are Blosc only), so that never meets fpzip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..checks import check_int
from ..codec import short_repr
from ..errors import ConfigurationError, FormatError, UnsupportedCodecError
from ..optional import require

FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


def check_float_dtype(codec_id: str, dtype: np.dtype) -> None:
    """Raise ConfigurationError unless ``dtype`` is float32 or float64."""
    if np.dtype(dtype).newbyteorder("=") not in FLOAT_DTYPES:
        raise ConfigurationError(
            f"The codec {codec_id!r} stores float32 and float64 volumes only. Got dtype {np.dtype(dtype)} "
            f"instead; use a Blosc compression (\"zstd\", \"lz4\"...) for integer data."
        )


def _fpzip() -> Any:
    return require("fpzip", extra="float", purpose="The fpzip and kempressed codecs")


def _pcodec() -> Any:
    return require("pcodec.standalone", extra="float", purpose="The pcodec codec", package="pcodec")


def _exact_params(record: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(record) - allowed - {"id", "loss"})
    if unknown:
        raise UnsupportedCodecError(f"codec {record['id']!r} with unknown parameters {short_repr(unknown)}")


def _finish(decoded: Any, want_shape: tuple[int, ...], dtype: np.dtype, out: np.ndarray | None, what: str
            ) -> np.ndarray:
    """Check a decoded frame's shape and dtype, copy it into ``out`` (or return it shaped)."""
    decoded = np.asarray(decoded)
    result: np.ndarray
    shape = tuple(int(s) for s in want_shape)
    if decoded.dtype != np.dtype(dtype).newbyteorder("=") or decoded.size != int(np.prod(shape)):
        raise FormatError(
            f"{what} frame holds {decoded.size} values of {decoded.dtype}; expected {int(np.prod(shape))} "
            f"of {np.dtype(dtype)} (shape {shape})"
        )
    if out is None:
        result = decoded.reshape(shape)
        return result
    out[...] = decoded.reshape(shape)
    return out


def _fpzip_decode(data: bytes, what: str) -> np.ndarray:
    fpzip = _fpzip()
    try:
        return np.asarray(fpzip.decompress(bytes(data), order="C"))
    except Exception as e:  # fpzip raises its own FpzipReadError and ValueErrors on garbage
        raise FormatError(f"corrupt {what} frame ({len(data)} bytes): {e}") from e


class _FloatCodec:
    """What the float codecs share: float dtypes only, a frame bound; without levels unless overridden."""

    id: ClassVar[str]
    shuffle: ClassVar[int] = 0

    @classmethod
    def from_level(cls, level: int | None) -> Any:
        """The codec; it has no levels, ``level`` is ignored."""
        return cls()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Any:
        """The codec of ``{"id": id}`` (and its "loss", checked by the caller)."""
        _exact_params(record, set())
        return cls()

    def check_dtype(self, dtype: np.dtype) -> None:
        """float32 and float64 only."""
        check_float_dtype(self.id, dtype)

    @staticmethod
    def max_frame_size(nbytes: int) -> int:
        """The frame of incompressible data is a little larger than the data."""
        return nbytes + nbytes // 8 + 1024


@dataclass(frozen=True)
class FpzipCodec(_FloatCodec):
    """Lossless fpzip (precision 0); it has no levels."""

    id: ClassVar[str] = "fpzip"
    compression: ClassVar[str] = "fpzip"
    level: ClassVar[int] = 0

    @property
    def loss(self) -> dict[str, float]:
        """Lossless."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """``{"id": "fpzip"}``."""
        return {"id": self.id}

    def encode(self, array: np.ndarray) -> bytes:
        """One fpzip frame of a (z, y, x) block."""
        self.check_dtype(array.dtype)
        return bytes(_fpzip().compress(np.ascontiguousarray(array, array.dtype.newbyteorder("=")), order="C"))

    def decode(
        self, data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The block of one fpzip frame (shape and dtype checked against the frame's header)."""
        decoded = _fpzip_decode(data, "fpzip")
        if decoded.shape != (1, *shape):
            raise FormatError(f"fpzip frame of shape {decoded.shape[1:]}; expected {tuple(shape)}")
        return _finish(decoded, shape, dtype, out, "fpzip")


@dataclass(frozen=True)
class PcodecCodec(_FloatCodec):
    """Lossless pcodec, levels 0-12 (numcodecs' default 8)."""

    id: ClassVar[str] = "pcodec"
    compression: ClassVar[str] = "pcodec"
    level: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", check_int(self.level, "a pcodec level", 0, 12))

    @classmethod
    def from_level(cls, level: int | None) -> PcodecCodec:
        """pcodec at ``level`` (None: 8)."""
        return cls() if level is None else cls(level)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PcodecCodec:
        """The codec of ``{"id": "pcodec", "level": 0-12}``."""
        _exact_params(record, {"level"})
        try:
            return cls(record.get("level", 8))
        except ConfigurationError as e:
            raise FormatError(f"codec 'pcodec': {e}") from e

    @property
    def loss(self) -> dict[str, float]:
        """Lossless."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """``{"id": "pcodec", "level": level}``."""
        return {"id": self.id, "level": self.level}

    def encode(self, array: np.ndarray) -> bytes:
        """One pcodec standalone frame of the flattened block."""
        self.check_dtype(array.dtype)
        pcodec = require("pcodec", extra="float", purpose="The pcodec codec")
        flat = np.ascontiguousarray(array, array.dtype.newbyteorder("=")).reshape(-1)
        return bytes(_pcodec().simple_compress(flat, pcodec.ChunkConfig(compression_level=self.level)))

    def decode(
        self, data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The block of one pcodec frame; the frame's count and dtype are checked."""
        standalone = _pcodec()
        want = np.dtype(dtype).newbyteorder("=")
        if out is not None and out.flags.c_contiguous and out.dtype == want:
            flat = out.reshape(-1)
            try:
                progress = standalone.simple_decompress_into(bytes(data), flat)
            except Exception as e:  # pcodec raises RuntimeError / ValueError on a bad frame
                raise FormatError(f"corrupt pcodec frame ({len(data)} bytes): {e}") from e
            if not progress.finished or progress.n_processed != flat.size:
                raise FormatError(f"pcodec frame holds {progress.n_processed} values; expected {flat.size}")
            return out
        try:
            decoded = standalone.simple_decompress(bytes(data))
        except Exception as e:
            raise FormatError(f"corrupt pcodec frame ({len(data)} bytes): {e}") from e
        if decoded is None:  # an empty frame
            decoded = np.empty(0, want)
        return _finish(decoded, shape, dtype, out, "pcodec")


@dataclass(frozen=True)
class KempressedCodec(_FloatCodec):
    """CloudVolume's kempressed: fpzip of (data + 2.0), z as fpzip's field axis; data in [0, 1] only."""

    id: ClassVar[str] = "kempressed"
    compression: ClassVar[str] = "kempressed"
    level: ClassVar[int] = 0

    @property
    def loss(self) -> dict[str, float]:
        """At most one machine epsilon of the volume's dtype, absolute."""
        return {"max_abs_error_eps": 1}

    def to_dict(self) -> dict[str, Any]:
        """The id and its loss bound."""
        return {"id": self.id, "loss": self.loss}

    def encode(self, array: np.ndarray) -> bytes:
        """One kempressed frame; ConfigurationError for values outside [0, 1] or NaN."""
        self.check_dtype(array.dtype)
        array = np.asarray(array)
        inside = (array >= 0) & (array <= 1)
        if not inside.all():
            bad = array[~inside]
            raise ConfigurationError(
                f"The codec 'kempressed' stores data in [0, 1] only; this block has {bad.size} values outside "
                f"it (e.g. {bad.flat[0]!r}). Use the lossless \"fpzip\" or \"pcodec\" for such data."
            )
        dtype = array.dtype.newbyteorder("=")
        shifted = np.ascontiguousarray(array, dtype) + dtype.type(2.0)
        return bytes(_fpzip().compress(shifted[:, np.newaxis], order="C"))

    def decode(
        self, data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The block of one kempressed frame: fpzip's (z, 1, y, x) minus 2.0."""
        decoded = _fpzip_decode(data, "kempressed")
        z, y, x = shape
        if decoded.shape != (z, 1, y, x):
            raise FormatError(f"kempressed frame of shape {decoded.shape}; expected {(z, 1, y, x)}")
        decoded = decoded.reshape(shape)
        decoded -= decoded.dtype.type(2.0)
        return _finish(decoded, shape, dtype, out, "kempressed")
