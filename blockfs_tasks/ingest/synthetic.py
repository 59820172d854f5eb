"""Deterministic synthetic light-sheet microscopy volumes.

The volume is used by the demo pipeline, the tests and the benchmarks, so it
must be cheap to generate, reproducible bit for bit, and producible slab by
slab without ever materialising the whole volume.

Image model (in uint16 "camera ADU" units)
------------------------------------------
* **Background**: a smooth, separable low-frequency pattern
  ``a_z*p(z) + a_y*p(y) + a_x*p(x)`` with ``p`` a slow cosine (0.5-1.5 periods
  across the axis, random phase), normalised so that its expected value spans
  exactly ``background = (low, high)``.  Most of the variation is along z and
  y; the x term is kept weak because strong variation along the fastest axis
  makes Blosc/zstd blocks much less compressible than real data.
* **Cells**: a fixed list of isotropic gaussian blobs derived from ``seed``.
  Radius ``r`` is uniform in [3, 8] voxels with ``sigma = r / 2`` (so the
  intensity at ``r`` is ``exp(-2)`` of the peak), peak height uniform in
  [1000, 4000] above background.  Each cell is rendered only into the voxels
  of its ``+-3 sigma`` bounding box.
* **Shot noise**: ``value = mu + sqrt(gain * mu) * N(0, 1)`` with
  ``gain = 0.5`` ADU per photo-electron, i.e. the Gaussian approximation of
  ``gain * Poisson(mu / gain)``.  The approximation is excellent at the
  photon counts involved (>= 200 e- with the default background) and the
  float32 normal draw is ~6x cheaper than ``rng.poisson`` (about 10 ms
  instead of about 65 ms per 1024x1024 plane): a full 1024x1024 uint16 plane
  takes ~16-19 ms, a 512x1024x1024 volume ~8-10 s on one core.  With this
  gain a 64x1024x1024 uint16 slab compresses ~2.8-2.9x with Blosc zstd-5 +
  byte shuffle.
* **Quantisation**: uint16 values are rounded and clipped to [0, 65535];
  uint8 values are the uint16 intensities divided by 16 (12-bit to 8-bit),
  rounded and clipped to [0, 255]; float32 values are the unrounded
  intensities clipped below at 0.

Determinism: the noise of plane ``z`` comes from
``np.random.default_rng([seed, 1, z])`` and the cell list / background
phases from ``np.random.default_rng([seed, 0])``; every voxel is computed by
the same sequence of floating-point operations whatever slab it is requested
in, so any split of ``[0, z)`` into slabs concatenates to ``slab(0, z)``
exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..core.checks import check_int
from ..core.errors import ConfigurationError

__all__ = ["DEFAULT_CELL_DENSITY", "SUPPORTED_DTYPES", "SyntheticVolume"]

logger = logging.getLogger(__name__)

#: Cells per voxel giving ~3000 cells in a 512x1024x1024 volume.
DEFAULT_CELL_DENSITY: float = 3000.0 / (512 * 1024 * 1024)

#: Output dtypes accepted by :class:`SyntheticVolume`.
SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "float32")

# Random streams (second entropy word of the SeedSequence).
_LAYOUT_STREAM = 0
_NOISE_STREAM = 1

# Background pattern: weights of the z, y and x terms (sum to 1) and range of
# the number of cosine periods across each axis.
_BG_WEIGHTS = (0.47, 0.47, 0.06)
_BG_PERIODS = (0.5, 1.5)

# Cells: radius range (voxels), sigma = radius / 2, bounding box +-3 sigma,
# peak height above background (uint16 ADU).
_CELL_RADIUS = (3.0, 8.0)
_SIGMA_PER_RADIUS = 0.5
_BBOX_SIGMAS = 3.0
_CELL_PEAK = (1000.0, 4000.0)

# Camera conversion gain (ADU per photo-electron) for the shot-noise model.
_GAIN = 0.5

# uint8 output = uint16-scale intensity * this factor (12-bit -> 8-bit).
_UINT8_SCALE = 1.0 / 16.0

# Voxels per float32 working chunk inside slab() (~16 MiB).
_CHUNK_VOXELS = 1 << 22


def _cosine_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """Slow cosine in [0, 1] over ``n`` samples (float64), random phase/period."""
    periods = rng.uniform(*_BG_PERIODS)
    phase = rng.uniform(0.0, 1.0)
    t = np.arange(n, dtype=np.float64) / n
    return 0.5 + 0.5 * np.cos(2.0 * np.pi * (periods * t + phase))


@dataclass(frozen=True)
class SyntheticVolume:
    """Deterministic synthetic light-sheet volume generated slab by slab.

    Parameters
    ----------
    shape_zyx
        Volume shape ``(z, y, x)``; three positive integers.
    dtype
        Output dtype, one of ``"uint8"``, ``"uint16"`` or ``"float32"``.
    seed
        Non-negative integer; same seed and parameters give identical data.
    cell_density
        Expected cells per voxel (the cell count is
        ``round(cell_density * z * y * x)``).  The default gives ~3000 cells
        in a 512x1024x1024 volume.
    background
        ``(low, high)`` expected background level in uint16 ADU; the smooth
        background pattern spans exactly this range (before noise).

    Raises
    ------
    ConfigurationError
        (a ``ValueError``) If a parameter is out of range or of the wrong type.

    Notes
    -----
    Instances are immutable and hold no data besides the small cell table,
    which is computed lazily on first use.  See the module docstring for the
    image model.
    """

    shape_zyx: tuple[int, int, int]
    dtype: str = "uint16"
    seed: int = 0
    cell_density: float = DEFAULT_CELL_DENSITY
    background: tuple[int, int] = (100, 200)

    def __post_init__(self) -> None:
        """Validate and normalise the fields."""
        shape = self.shape_zyx
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
            raise ConfigurationError(
                "shape_zyx must be a sequence of 3 positive integers, "
                f"got {shape!r}"
            )
        if len(shape) != 3:
            raise ConfigurationError(
                "shape_zyx must have exactly 3 dimensions (z, y, x), "
                f"got {len(shape)}: {tuple(shape)!r}"
            )
        dims = tuple(check_int(v, f"shape_zyx[{i}]") for i, v in enumerate(shape))
        if any(d <= 0 for d in dims):
            raise ConfigurationError(f"shape_zyx must contain positive integers, got {dims!r}")
        object.__setattr__(self, "shape_zyx", dims)

        try:
            name = np.dtype(self.dtype).name
        except TypeError:
            name = str(self.dtype)
        if name not in SUPPORTED_DTYPES:
            raise ConfigurationError(
                f"unsupported dtype {self.dtype!r}; supported dtypes are "
                f"{', '.join(SUPPORTED_DTYPES)}"
            )
        object.__setattr__(self, "dtype", name)

        seed = check_int(self.seed, "seed")
        if seed < 0:
            raise ConfigurationError(f"seed must be a non-negative integer, got {seed}")
        object.__setattr__(self, "seed", seed)

        try:
            density = float(self.cell_density)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"cell_density must be a real number, got {self.cell_density!r}"
            ) from None
        if not (math.isfinite(density) and 0.0 <= density <= 1.0):
            raise ConfigurationError(
                f"cell_density must be a finite number of cells per voxel in [0, 1], "
                f"got {self.cell_density!r}"
            )
        object.__setattr__(self, "cell_density", density)

        bg = self.background
        if isinstance(bg, (str, bytes)) or not hasattr(bg, "__len__") or len(bg) != 2:
            raise ConfigurationError(f"background must be a (low, high) pair, got {bg!r}")
        low = check_int(bg[0], "background low")
        high = check_int(bg[1], "background high")
        if not 0 <= low <= high:
            raise ConfigurationError(
                f"background must satisfy 0 <= low <= high, got ({low}, {high})"
            )
        object.__setattr__(self, "background", (low, high))

    # ------------------------------------------------------------------ layout
    @property
    def n_cells(self) -> int:
        """Number of cells in the volume."""
        return int(self.cells.shape[0])

    @cached_property
    def _layout(self) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """Cell table, integer cell bounding boxes and background profiles.

        Derived once from ``seed``; small (O(cells + z + y + x)).
        """
        nz, ny, nx = self.shape_zyx
        rng = np.random.default_rng([self.seed, _LAYOUT_STREAM])
        profiles = tuple(_cosine_profile(n, rng) for n in (nz, ny, nx))

        n = int(round(self.cell_density * nz * ny * nx))
        centers = rng.uniform(0.0, 1.0, size=(n, 3)) * np.array(
            [nz, ny, nx], dtype=np.float64
        )
        sigma = rng.uniform(*_CELL_RADIUS, size=n) * _SIGMA_PER_RADIUS
        peak = rng.uniform(*_CELL_PEAK, size=n)
        cells = np.column_stack([centers, sigma, peak])
        cells.setflags(write=False)

        half = _BBOX_SIGMAS * sigma[:, None]
        lo = np.maximum(np.ceil(centers - half), 0).astype(np.int64)
        hi = np.minimum(
            np.floor(centers + half), np.array([nz, ny, nx]) - 1
        ).astype(np.int64)
        bbox = np.concatenate([lo, hi], axis=1)  # zlo, ylo, xlo, zhi, yhi, xhi
        bbox.setflags(write=False)
        logger.debug(
            "synthetic volume %s: %d cells (seed=%d)", self.shape_zyx, n, self.seed
        )
        return cells, bbox, profiles

    @property
    def cells(self) -> np.ndarray:
        """Read-only ``(n, 5)`` float64 table of cells: z, y, x, sigma, peak.

        Useful as ground truth for detection benchmarks.  ``peak`` is in
        uint16 ADU above background.
        """
        return self._layout[0]

    # -------------------------------------------------------------- rendering
    def _background_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (per-plane float64 offsets, float32 (y, x) background term)."""
        _, _, (pz, py, px) = self._layout
        low, high = self.background
        wz, wy, wx = _BG_WEIGHTS
        s_min = wz * pz.min() + wy * py.min() + wx * px.min()
        s_max = wz * pz.max() + wy * py.max() + wx * px.max()
        span = s_max - s_min
        if span > 0:
            scale = (high - low) / span
            offset_z = low + scale * (wz * (pz - pz.min()))
            yx = scale * (wy * (py - py.min())[:, None] + wx * (px - px.min())[None, :])
        else:  # degenerate 1-voxel axes: flat background at mid level
            offset_z = np.full(pz.shape, 0.5 * (low + high))
            yx = np.zeros((py.size, px.size))
        return offset_z, yx.astype(np.float32)

    def _render_cells(self, buf: np.ndarray, z0: int) -> None:
        """Add the cells touching planes ``[z0, z0 + len(buf))`` into ``buf``."""
        cells, bbox, _ = self._layout
        if cells.shape[0] == 0:
            return
        z1 = z0 + buf.shape[0]
        hit = np.flatnonzero((bbox[:, 0] < z1) & (bbox[:, 3] >= z0))
        for i in hit:
            cz, cy, cx, sigma, peak = cells[i]
            zlo, ylo, xlo, zhi, yhi, xhi = (int(v) for v in bbox[i])
            # Profiles always span the full (volume-clipped) bbox so each
            # voxel's value does not depend on the requested slab.
            inv = 1.0 / (2.0 * sigma * sigma)
            gz = (peak * np.exp(-inv * (np.arange(zlo, zhi + 1) - cz) ** 2)).astype(
                np.float32
            )
            gy = np.exp(-inv * (np.arange(ylo, yhi + 1) - cy) ** 2).astype(np.float32)
            gx = np.exp(-inv * (np.arange(xlo, xhi + 1) - cx) ** 2).astype(np.float32)
            a, b = max(zlo, z0), min(zhi + 1, z1)
            block = gz[a - zlo : b - zlo, None, None] * gy[None, :, None]
            block = block * gx[None, None, :]
            buf[a - z0 : b - z0, ylo : yhi + 1, xlo : xhi + 1] += block

    def slab(self, z0: int, z1: int) -> np.ndarray:
        """Return planes ``[z0, z1)`` as a new ``(z1 - z0, y, x)`` array.

        Only the output plus a bounded float32 working chunk (~16 MiB, or one
        plane if larger) is allocated, never the whole volume.

        Raises
        ------
        ConfigurationError
            If the bounds are not integers with ``0 <= z0 <= z1 <= z``.
        """
        nz, ny, nx = self.shape_zyx
        z0 = check_int(z0, "z0")
        z1 = check_int(z1, "z1")
        if not 0 <= z0 <= z1 <= nz:
            raise ConfigurationError(
                f"slab bounds must satisfy 0 <= z0 <= z1 <= {nz} (volume z range "
                f"[0, {nz})), got z0={z0}, z1={z1}"
            )
        out = np.empty((z1 - z0, ny, nx), dtype=self.dtype)
        if z1 == z0:
            return out

        offset_z, bg_yx = self._background_terms()
        chunk = max(1, _CHUNK_VOXELS // (ny * nx))
        gain = np.float32(_GAIN)
        for c0 in range(z0, z1, chunk):
            c1 = min(c0 + chunk, z1)
            buf = np.empty((c1 - c0, ny, nx), dtype=np.float32)
            for z in range(c0, c1):
                np.add(bg_yx, np.float32(offset_z[z]), out=buf[z - c0])
            self._render_cells(buf, c0)
            for z in range(c0, c1):
                mu = buf[z - c0]
                rng = np.random.default_rng([self.seed, _NOISE_STREAM, z])
                value = rng.standard_normal((ny, nx), dtype=np.float32)
                np.maximum(mu, 0, out=mu)
                value *= np.sqrt(mu * gain)
                value += mu
                self._quantise(value, out[z - z0])
        return out

    def _quantise(self, value: np.ndarray, dest: np.ndarray) -> None:
        """Convert float32 intensities (in place) to the output dtype in ``dest``."""
        if self.dtype == "float32":
            np.maximum(value, 0, out=value)
        else:
            if self.dtype == "uint8":
                value *= np.float32(_UINT8_SCALE)
            info = np.iinfo(self.dtype)
            np.rint(value, out=value)
            np.clip(value, info.min, info.max, out=value)
        np.copyto(dest, value, casting="unsafe")

    def plane(self, z: int) -> np.ndarray:
        """Return plane ``z`` as a ``(y, x)`` array (same data as ``slab``).

        Raises
        ------
        ConfigurationError
            If ``z`` is not an integer in ``[0, z)``.
        """
        nz = self.shape_zyx[0]
        z = check_int(z, "z")
        if not 0 <= z < nz:
            raise ConfigurationError(f"plane index z={z} out of range [0, {nz})")
        plane: np.ndarray = self.slab(z, z + 1)[0]
        return plane
