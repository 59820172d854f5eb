"""BitRound: an opt-in lossy filter before any codec, keeping N mantissa bits of float data.

Rounding to nearest (ties to even) with ``keepbits`` mantissa bits leaves
long runs of zero bits that any codec then compresses far better; the frame
stays a normal frame of the inner codec, so every reader decodes it. The loss
bound is a relative error of at most 2**-(keepbits + 1) (``"max_rel_error"``
in the codec record); for subnormal values (below the dtype's smallest normal
``tiny``) the error is at most 2**-(keepbits + 1) * tiny. NaN and infinities are kept bit for bit; a finite value
that would round past the dtype's largest finite value is truncated instead
(relative error < 2**-keepbits there, only within half a step of the maximum).

The rounding is numcodecs' ``BitRound``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numcodecs import BitRound as _NumcodecsBitRound

from ..checks import check_int
from ..codec import Codec
from ..errors import ConfigurationError
from .floats import check_float_dtype

KEEPBITS_KEY = "bitround_keepbits"
_MANTISSA_BITS = {np.dtype("float32"): 23, np.dtype("float64"): 52}


def bitround(array: np.ndarray, keepbits: int) -> np.ndarray:
    """A copy of ``array`` (float32/64) with ``keepbits`` mantissa bits, rounded to nearest."""
    dtype = array.dtype.newbyteorder("=")
    mantissa = _MANTISSA_BITS[dtype]
    original = np.ascontiguousarray(array, dtype)
    if keepbits >= mantissa:
        return original
    rounded = np.asarray(_NumcodecsBitRound(keepbits).encode(original)).view(dtype).reshape(array.shape)
    finite = np.isfinite(original)
    overflow = finite & ~np.isfinite(rounded)
    if overflow.any():  # within half a step of the largest float: truncate instead of rounding to inf
        ints = original[overflow].view(f"u{dtype.itemsize}")
        drop = mantissa - keepbits
        rounded[overflow] = ((ints >> drop) << drop).view(dtype)
    return np.where(finite, rounded, original)


@dataclass(frozen=True)
class BitRound:
    """``inner`` after rounding float data to ``keepbits`` mantissa bits (0-52)."""

    inner: Codec
    keepbits: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "keepbits", check_int(self.keepbits, "bitround_keepbits", 0, 52))

    @property
    def compression(self) -> str:
        """The inner codec's name."""
        return self.inner.compression

    @property
    def level(self) -> int:
        """The inner codec's level."""
        return self.inner.level

    @property
    def shuffle(self) -> int:
        """The inner codec's shuffle."""
        return self.inner.shuffle

    @property
    def loss(self) -> dict[str, float]:
        """The inner codec's loss plus a relative error of 2**-(keepbits + 1) (the errors add)."""
        return {**self.inner.loss, "max_rel_error": 2.0 ** -(self.keepbits + 1)}

    def check_dtype(self, dtype: np.dtype) -> None:
        """float32 (keepbits <= 23) or float64 and the inner codec's own check."""
        check_float_dtype("bitround", dtype)
        self.inner.check_dtype(dtype)
        mantissa = _MANTISSA_BITS[np.dtype(dtype).newbyteorder("=")]
        if self.keepbits > mantissa:
            raise ConfigurationError(
                f"Expected bitround_keepbits from 0 to {mantissa} for {np.dtype(dtype)}. Got {self.keepbits} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        """The inner codec's record plus ``bitround_keepbits`` and the combined ``loss``."""
        return {**self.inner.to_dict(), KEEPBITS_KEY: self.keepbits, "loss": self.loss}

    def max_frame_size(self, nbytes: int) -> int:
        """The inner codec's."""
        return self.inner.max_frame_size(nbytes)

    def encode(self, array: np.ndarray) -> bytes:
        """The inner codec's frame of the rounded block."""
        self.check_dtype(array.dtype)
        return self.inner.encode(bitround(np.asarray(array), self.keepbits))

    def decode(
        self, data: bytes, dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The inner codec's decode: rounding needs no undoing."""
        return self.inner.decode(data, dtype, shape, out)
