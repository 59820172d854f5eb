"""Pyramid planning: which levels to make, their specs, and the batches of blocks of a level.

Everything here is pure arithmetic on shapes (no data is read), in XYZ order
unless a name says ``zyx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.checks import check_optional_positive, check_positive
from ..core.codec import BlockCodec
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.grid import BlockGrid

MODES = ("mean", "mode")

#: Axes whose resolution exceeds this times the finest resolution are not downsampled.
ANISOTROPY_THRESHOLD = 1.5

XYZ = tuple[int, int, int]


@dataclass(frozen=True)
class Level:
    """One level of a pyramid; every field is in XYZ order."""

    key: str
    factors_xyz: XYZ  # relative to level 0
    step_xyz: XYZ  # relative to the level before (1, 1, 1 for level 0)
    extent_xyz: XYZ
    resolution_nm_xyz: tuple[float, float, float]


def level_key(factors_xyz: Sequence[int]) -> str:
    """The key (folder name, chunk URL prefix) of a level: ``"x_y_z"`` factors."""
    return "_".join(str(int(f)) for f in factors_xyz)


def check_xyz(name: str, values: Sequence[Any], kind: type = int) -> tuple[Any, ...]:
    """``values`` as three positive ``kind`` (int or float) in XYZ order, else ConfigurationError."""
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"Expected {name} as three numbers (x, y, z). Got {values!r} instead.") from e
    if len(out) != 3 or any(not v > 0 for v in out) or any(kind(v) != v for v in values):
        raise ConfigurationError(
            f"Expected {name} as three positive {kind.__name__}s (x, y, z). Got {values!r} instead."
        )
    return out


def _auto_step(extent_xyz: XYZ, resolution_nm_xyz: tuple[float, ...]) -> XYZ:
    """2 on each axis that can shrink, but 1 on axes much coarser than the finest one."""
    movable = [i for i in range(3) if extent_xyz[i] > 1]
    finest = min(resolution_nm_xyz[i] for i in movable)
    sx, sy, sz = (
        2 if i in movable and resolution_nm_xyz[i] <= ANISOTROPY_THRESHOLD * finest else 1 for i in range(3)
    )
    return sx, sy, sz


def plan_levels(
    shape_zyx: Sequence[int],
    block_xyz: Sequence[int],
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
) -> list[Level]:
    """Choose the levels of a pyramid over a level 0 of ``shape_zyx`` (z, y, x).

    Parameters
    ----------
    shape_zyx
        Shape of level 0, (z, y, x) order.
    block_xyz
        Block size of every level, XYZ order.
    resolution_nm_xyz
        Voxel size of level 0 in nanometres, XYZ order.
    max_levels
        Most levels to make, level 0 included (``None``: no limit).
    factors
        Explicit per-level steps (XYZ), one per level after level 0, e.g.
        ``[(2, 2, 1), (2, 2, 2)]``. Without it, each step is 2 on every axis,
        except 1 on an axis whose resolution is over ``ANISOTROPY_THRESHOLD``
        times the finest one (anisotropic light-sheet data reach isotropy
        first) or whose extent is already 1; levels are added until one
        block holds the whole level.
    """
    if len(tuple(shape_zyx)) != 3:
        raise ConfigurationError(f"Expected a shape (z, y, x). Got {shape_zyx!r} instead.")
    extent = check_xyz("a shape", tuple(reversed(tuple(shape_zyx))))
    block = check_xyz("block sizes", block_xyz)
    resolution = check_xyz("resolutions (nm)", resolution_nm_xyz, float)
    max_levels = check_optional_positive(max_levels, "max_levels")
    steps = None if factors is None else [check_xyz(f"factors of level {i + 1}", f) for i, f in enumerate(factors)]
    levels = [Level(level_key((1, 1, 1)), (1, 1, 1), (1, 1, 1), extent, resolution)]
    while max_levels is None or len(levels) < max_levels:
        last = levels[-1]
        if steps is not None:
            if len(levels) > len(steps):
                break
            step = steps[len(levels) - 1]
        else:
            if all(e <= b for e, b in zip(last.extent_xyz, block, strict=True)):
                break
            step = _auto_step(last.extent_xyz, last.resolution_nm_xyz)
        fx, fy, fz = (f * s for f, s in zip(last.factors_xyz, step, strict=True))
        ex, ey, ez = (-(-e // s) for e, s in zip(last.extent_xyz, step, strict=True))
        rx, ry, rz = (r * f for r, f in zip(resolution, (fx, fy, fz), strict=True))
        levels.append(Level(level_key((fx, fy, fz)), (fx, fy, fz), step, (ex, ey, ez), (rx, ry, rz)))
    if len({level.key for level in levels}) < len(levels):
        raise ConfigurationError(f"Two levels have the same factors: {[level.key for level in levels]}")
    return levels


def level_spec(level0: VolumeSpec, level: Level, mode: str = "mean", codec: BlockCodec | None = None) -> VolumeSpec:
    """The VolumeSpec of ``level``: level 0's block size, dtype and codec, the level's extent.

    The level is described in the metadata (``{"pyramid": {...}}``), which is
    where :func:`downsample_batch` finds the step from the level before.
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    return VolumeSpec(
        BlockGrid(level.extent_xyz, level0.grid.block_xyz),
        level0.dtype,
        codec or level0.codec,
        {
            "pyramid": {
                "key": level.key,
                "factors_xyz": list(level.factors_xyz),
                "step_xyz": list(level.step_xyz),
                "resolution_nm_xyz": list(level.resolution_nm_xyz),
                "mode": mode,
            }
        },
    )


def plan_downsample_batches(spec_next: VolumeSpec, target_batches: int) -> list[list[XYZ]]:
    """Split the blocks of a level into about ``target_batches`` batches of block origins (x, y, z).

    Batches are runs of consecutive block positions (x fastest, then y, z), so
    each batch reads a compact slab of the level below. No batch is empty.
    """
    target_batches = check_positive(target_batches, "target_batches")
    origins = list(spec_next.grid.origins())
    n = min(target_batches, len(origins))
    bounds = [len(origins) * i // n for i in range(n + 1)]
    return [origins[bounds[i] : bounds[i + 1]] for i in range(n)]
