"""Several levels from one read: groups of levels, their batches, and one batch's work.

Level ``k + 1`` is defined from level ``k``, but it need not be *read* from it:
one region of a base level, read and decoded once, holds everything the levels
above it need inside that region. A *group* is a run of levels
``base + 1 .. top`` made together: a batch reads, for each of its blocks of
level ``top``, the region of level ``base`` under it (``block * steps`` voxels,
aligned to the blocks of every level in between), reduces it level by level in
memory, and writes the blocks of every level of the group. So levels of one
group never wait for each other, and level-0 blocks are decoded once for the
whole group (as igneous does with tinybrain: one task writes mips 1..k).

The result is the same as building level by level (the reductions run on
the same voxels, edges included); a block whose source blocks are all absent
stays absent, tracked with a presence mask reduced like the data.

Groups are sized by memory: a group grows while the base region of one top
block fits ``region_bytes`` and the top level still has blocks enough to split
into ``min_batches`` batches (so every worker has work); a base level of at
most a quarter of ``region_bytes`` is read whole for all the levels left
(splitting it would cost more than it saves).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.directory import Directory
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.grid import BlockGrid
from .layout import Pyramid
from .planning import MODES, XYZ, check_positive, plan_downsample_batches
from .reduce import REDUCERS, BlockWriter, step_of

logger = logging.getLogger(__name__)

#: A base level of at most ``region_bytes // SMALL_LEVEL_FRACTION`` bytes is read whole: splitting it into
#: more groups or tasks would cost more (a sequential stage, tasks to schedule) than it saves.
SMALL_LEVEL_FRACTION = 4


@dataclass(frozen=True)
class LevelGroup:
    """Levels ``base + 1 .. top`` of a pyramid, made together from level ``base``."""

    base: int
    top: int

    @property
    def levels(self) -> range:
        """The levels written."""
        return range(self.base + 1, self.top + 1)


def _span(pyramid: Pyramid, lower: int, upper: int) -> XYZ:
    """Voxels of level ``lower`` per voxel of level ``upper`` (XYZ)."""
    fl, fu = pyramid.levels[lower].factors_xyz, pyramid.levels[upper].factors_xyz
    x, y, z = (u // lo for u, lo in zip(fu, fl, strict=True))
    return x, y, z


def _region_bytes(pyramid: Pyramid, base: int, top: int) -> int:
    """Bytes of the base-level region under one block of level ``top``."""
    span = _span(pyramid, base, top)
    extent = pyramid.levels[base].extent_xyz
    voxels = math.prod(min(b * s, e) for b, s, e in zip(pyramid.block_xyz, span, extent, strict=True))
    return voxels * np.dtype(pyramid.dtype).itemsize


def _n_blocks(pyramid: Pyramid, level: int) -> int:
    return BlockGrid(pyramid.levels[level].extent_xyz, pyramid.block_xyz).n_blocks


def plan_groups(pyramid: Pyramid, region_bytes: int, min_batches: int = 2) -> list[LevelGroup]:
    """Split the levels above 0 into groups (see the module docstring)."""
    region_bytes = check_positive(region_bytes, "region_bytes")
    min_batches = check_positive(min_batches, "min_batches")
    groups: list[LevelGroup] = []
    base, n = 0, len(pyramid.levels)
    while base + 1 < n:
        top = base + 1
        base_bytes = _region_bytes(pyramid, base, base) * _n_blocks(pyramid, base)
        while top + 1 < n:
            fits = _region_bytes(pyramid, base, top + 1) <= region_bytes
            small = base_bytes <= region_bytes // SMALL_LEVEL_FRACTION
            parallel = _n_blocks(pyramid, top + 1) >= min_batches or small
            if not (fits and parallel):
                break
            top += 1
        groups.append(LevelGroup(base, top))
        base = top
    return groups


def group_of(groups: Sequence[LevelGroup], level: int) -> LevelGroup:
    """The group that writes ``level`` (>= 1)."""
    for group in groups:
        if level in group.levels:
            return group
    raise ConfigurationError(f"no group writes level {level} (groups {groups})")


def group_batches(pyramid: Pyramid, group: LevelGroup, blocks_per_batch: int, min_batches: int = 2) -> list[list[XYZ]]:
    """Batches of origins of level ``group.top``: about ``blocks_per_batch`` output blocks each, >= ``min_batches``.

    Output blocks count every level of the group (a top block carries the
    blocks of the levels under it).
    """
    blocks_per_batch = check_positive(blocks_per_batch, "blocks_per_batch")
    top = pyramid.levels[group.top]
    grid = BlockGrid(top.extent_xyz, pyramid.block_xyz)
    written = sum(_n_blocks(pyramid, level) for level in group.levels)
    target = max(math.ceil(written / blocks_per_batch), min(min_batches, grid.n_blocks))
    return plan_downsample_batches(VolumeSpec(grid, np.dtype(pyramid.dtype)), target)


def _any_pool(mask: np.ndarray, step_zyx: tuple[int, int, int]) -> np.ndarray:
    """True where any element of each ``step_zyx`` window is True (edge windows cut short)."""
    out_shape = tuple(-(-n // s) for n, s in zip(mask.shape, step_zyx, strict=True))
    padded = np.zeros(tuple(o * s for o, s in zip(out_shape, step_zyx, strict=True)), bool)
    padded[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    sz, sy, sx = step_zyx
    oz, oy, ox = out_shape
    result: np.ndarray = np.asarray(padded.reshape(oz, sz, oy, sy, ox, sx).any(axis=(1, 3, 5)))
    return result


def downsample_group_batch(
    src: Directory,
    specs: Sequence[VolumeSpec],
    writers: Sequence[BlockWriter],
    top_origins: Iterable[Sequence[int]],
    mode: str = "mean",
    progress: Callable[[int], None] | None = None,
    level1: Callable[[int, int, int, int, int, int], np.ndarray | None] | None = None,
) -> list[int]:
    """Write the blocks of several levels under ``top_origins`` from one read of ``src``; return blocks per level.

    Parameters
    ----------
    src
        The group's base level, opened for reading.
    specs
        The specs of the levels written, in order (:func:`level_spec`); each
        one's metadata give its step from the level before.
    writers
        One writer per level of ``specs`` (BatchWriters or live Directories).
    top_origins
        Origins (x, y, z) of blocks of the last level of ``specs``.
    progress
        Called with 1 after each top block.
    level1
        ``level1(z0, z1, y0, y1, x0, x1)``: the first level of ``specs`` in that
        box (its voxels), already reduced, or None to reduce it from ``src``
        (:class:`~.prereduce.Level1Slabs`, the slabs ingest left). Which blocks
        are written is decided from ``src``'s index either way.
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    if not specs or len(specs) != len(writers):
        raise ConfigurationError(f"{len(specs)} level specs for {len(writers)} writers; expected one writer per level")
    steps = [step_of(spec, None) for spec in specs]
    extent = src.grid.extent_xyz
    for spec, step in zip(specs, steps, strict=True):
        expected = tuple(-(-e // s) for e, s in zip(extent, step, strict=True))
        if expected != spec.grid.extent_xyz or spec.grid.block_xyz != src.grid.block_xyz:
            raise ConfigurationError(
                f"{src.directory_filename}: a level of extent (x, y, z) {extent} downsampled by {step} is "
                f"{expected} with blocks {src.grid.block_xyz}, but the next level has extent "
                f"{spec.grid.extent_xyz} and blocks {spec.grid.block_xyz}"
            )
        extent = spec.grid.extent_xyz
    # spans[i]: voxels of level i (0 = src) per voxel of the top level, XYZ
    spans: list[XYZ] = [(1, 1, 1)]
    for step in reversed(steps):
        sx, sy, sz = spans[0]
        spans.insert(0, (sx * step[0], sy * step[1], sz * step[2]))
    grids = [src.grid, *(spec.grid for spec in specs)]
    block = src.grid.block_xyz
    written = [0] * len(specs)
    for origin in top_origins:
        ox, oy, oz = (int(v) for v in origin)
        specs[-1].grid.check_origin(ox, oy, oz)
        lo = [(ox * s[0], oy * s[1], oz * s[2]) for s in spans]
        hi = [
            tuple(min(e, (o + b) * sp) for o, b, sp, e in zip((ox, oy, oz), block, s, g.extent_xyz, strict=True))
            for s, g in zip(spans, grids, strict=True)
        ]
        (x0, y0, z0), (x1, y1, z1) = lo[0], hi[0]
        present = np.array(
            [[[src.has_block(x, y, z) for x in range(x0, x1, block[0])] for y in range(y0, y1, block[1])]
             for z in range(z0, z1, block[2])],
            bool,
        )
        if present.any():
            (lx, ly, lz), (hx, hy, hz) = lo[1], hi[1]
            reduced = None if level1 is None else level1(lz, hz, ly, hy, lx, hx)
            data = src[z0:z1, y0:y1, x0:x1] if reduced is None else reduced
            for i, (spec, step, writer) in enumerate(zip(specs, steps, writers, strict=True)):
                step_zyx = (step[2], step[1], step[0])
                if i or reduced is None:
                    data = REDUCERS[mode](data, step_zyx)
                present = _any_pool(present, step_zyx)
                (lx, ly, lz), (hx, hy, hz) = lo[i + 1], hi[i + 1]
                if data.shape != (hz - lz, hy - ly, hx - lx):
                    raise ConfigurationError(
                        f"{src.directory_filename}: region under top block {origin} reduces to {data.shape} "
                        f"(z, y, x) at level {spec.grid.extent_xyz}, expected {(hz - lz, hy - ly, hx - lx)}"
                    )
                bx, by, bz = block
                for iz, z in enumerate(range(lz, hz, bz)):
                    for iy, y in enumerate(range(ly, hy, by)):
                        for ix, x in enumerate(range(lx, hx, bx)):
                            if present[iz, iy, ix]:
                                rz, ry, rx = z - lz, y - ly, x - lx
                                writer.write_block(
                                    np.ascontiguousarray(data[rz : rz + bz, ry : ry + by, rx : rx + bx]), x, y, z
                                )
                                written[i] += 1
        if progress is not None:
            progress(1)
    logger.debug("group from %s: %s blocks written per level", src.directory_filename, written)
    return written
