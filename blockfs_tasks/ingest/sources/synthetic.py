"""Synthetic sources (``synthetic``): :class:`blockfs_tasks.ingest.synthetic.SyntheticVolume`
named by a string ``synthetic:ZxYxX[:dtype][:seed=N]``."""

from __future__ import annotations

import re

import numpy as np

from ..errors import SourceError
from ..synthetic import SyntheticVolume
from .base import Source

SYNTHETIC_PREFIX = "synthetic:"
_SYNTHETIC_SHAPE = re.compile(r"^(\d+)[xX](\d+)[xX](\d+)$")


class SyntheticSource(Source):
    """:class:`blockfs_tasks.ingest.synthetic.SyntheticVolume` as a source."""

    kind = "synthetic"

    def __init__(self, spec: str, shape_zyx: tuple[int, int, int], dtype: str, seed: int) -> None:
        super().__init__(spec)
        try:
            self.volume = SyntheticVolume(shape_zyx, dtype=dtype, seed=seed)
        except ValueError as e:
            raise SourceError(f"{spec}: {e}") from e
        self.shape = self.volume.shape_zyx
        self.dtype = np.dtype(self.volume.dtype)

    def _detail(self) -> str:
        return f"seed {self.volume.seed}"

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        _, ny, nx = self.shape
        if y0 == 0 and y1 == ny:
            return self.volume.slab(z0, z1)
        # Generate whole planes a few at a time so the working memory stays
        # within max(request, one plane), not (z1 - z0) whole planes.
        out = np.empty((z1 - z0, y1 - y0, nx), dtype=self.dtype)
        per_chunk = max(1, out.nbytes // (ny * nx * self.dtype.itemsize))
        for c0 in range(z0, z1, per_chunk):
            c1 = min(c0 + per_chunk, z1)
            out[c0 - z0 : c1 - z0] = self.volume.slab(c0, c1)[:, y0:y1]
        return out


def parse_synthetic(spec: str) -> SyntheticSource:
    """The source named by ``synthetic:ZxYxX[:dtype][:seed=N]``; SourceError if the string is malformed."""
    parts = spec[len(SYNTHETIC_PREFIX):].split(":")
    m = _SYNTHETIC_SHAPE.match(parts[0].strip())
    if not m:
        raise SourceError(
            f"{spec}: expected 'synthetic:ZxYxX[:dtype][:seed=N]' with a shape like "
            f"64x256x256. Got {parts[0]!r} instead."
        )
    shape = (int(m[1]), int(m[2]), int(m[3]))
    dtype: str | None = None
    seed: int | None = None
    for part in parts[1:]:
        part = part.strip()
        if part.lower().startswith("seed="):
            if seed is not None:
                raise SourceError(f"{spec}: seed given twice")
            try:
                seed = int(part[5:])
            except ValueError:
                raise SourceError(
                    f"{spec}: expected seed=N with N a non-negative integer. Got {part!r} instead."
                ) from None
        elif dtype is None and part:
            dtype = part
        else:
            raise SourceError(
                f"{spec}: unexpected option {part!r}; expected ':dtype' and ':seed=N'"
            )
    return SyntheticSource(spec, shape, dtype or "uint16", 0 if seed is None else seed)
