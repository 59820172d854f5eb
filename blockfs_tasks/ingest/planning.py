"""The batch planner: divides a volume into batches of blocks, one per writer (a Luigi task, a job).

Pure functions, no luigi, no IO. :func:`plan_volume` turns a source into the
volume's spec; :func:`plan_batches` splits its blocks. A *unit* is one z row of blocks restricted to
a band of y block rows (all of x): it is what one task holds in memory at a
time, so ``band_rows`` is chosen to keep a unit under the memory budget however
wide the planes. A *batch* is a run of consecutive units, written by one task
into one block file; the number of units per batch keeps the number of tasks
near a target (Luigi's scheduler cost per task grows with the task count).
Units are numbered z row first, then y band: a batch is a z-slab when bands
are whole rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.codec import BlockCodec, Codec, Compression, make_codec
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.grid import BlockGrid

if TYPE_CHECKING:
    from .sources import Source


#: The codec ingest uses unless told otherwise, the same as the Luigi pipeline's ``[blockfs]`` defaults:
#: Blosc zstd level 2 + byte shuffle, chosen by measurement (``benchmarks/results/codecs.md``).
#: The live ``Directory()`` keeps the original blockfs's zstd level 5.
INGEST_CODEC = BlockCodec("zstd", 2, True)


def pipeline_codec(
    compression: str, level: int | None, shuffle: int = 1, bitround_keepbits: int | None = None
) -> Codec:
    """The codec a pipeline run writes; ``level=None`` is the pipeline's default for ``compression``.

    That default is :data:`INGEST_CODEC`'s level (2) for a Blosc compressor,
    the codec's own for the others (pcodec 8), so ``compression = pcodec``
    alone does not inherit a level measured for Blosc.
    """
    if level is None and compression in Compression.__members__:
        level = INGEST_CODEC.level
    return make_codec(compression, level, shuffle, bitround_keepbits)


@dataclass(frozen=True)
class Unit:
    """A (z, y) voxel box spanning all of x: ``[z0, z1) x [y0, y1)``."""

    z0: int
    z1: int
    y0: int
    y1: int


@dataclass(frozen=True)
class BatchPlan:
    """How a volume's blocks are split into batches."""

    grid: BlockGrid
    band_rows: int
    units_per_batch: int

    @property
    def bands_per_row(self) -> int:
        """Number of y bands in one z row of blocks."""
        return -(-self.grid.grid_shape[1] // self.band_rows)

    @property
    def n_units(self) -> int:
        """Number of units in the volume."""
        return self.grid.grid_shape[0] * self.bands_per_row

    @property
    def n_batches(self) -> int:
        """Number of batches (tasks)."""
        return -(-self.n_units // self.units_per_batch)

    def unit(self, i: int) -> Unit:
        """The voxel box of unit ``i``."""
        row, band = divmod(i, self.bands_per_row)
        bx, by, bz = self.grid.block_xyz
        ex, ey, ez = self.grid.extent_xyz
        y0 = band * self.band_rows * by
        return Unit(row * bz, min(ez, (row + 1) * bz), y0, min(ey, y0 + self.band_rows * by))

    def units(self, batch: int) -> list[Unit]:
        """The units of batch ``batch``, in order."""
        if not 0 <= batch < self.n_batches:
            raise ConfigurationError(f"batch {batch} outside 0..{self.n_batches - 1}")
        first = batch * self.units_per_batch
        return [self.unit(i) for i in range(first, min(self.n_units, first + self.units_per_batch))]

    def describe(self, batch: int) -> dict[str, int]:
        """What batch ``batch`` covers, as stored in its fragment (see core.batch)."""
        first = batch * self.units_per_batch
        return {
            "batch": batch,
            "first_unit": first,
            "stop_unit": min(self.n_units, first + self.units_per_batch),
            "band_rows": self.band_rows,
        }


def plan_volume(source: Source, block_xyz: Sequence[int], codec: Codec | None = None) -> VolumeSpec:
    """The volume ``source`` becomes: its shape and dtype, blocks of ``block_xyz`` voxels (XYZ order), ``codec``.

    Reads nothing: an open source already knows its shape and dtype. ``codec``
    defaults to :data:`INGEST_CODEC`, what a Luigi run writes by default.
    """
    z, y, x = source.shape
    bx, by, bz = block_xyz
    return VolumeSpec(BlockGrid((x, y, z), (bx, by, bz)), source.dtype, codec or INGEST_CODEC)


def plan_batches(
    grid: BlockGrid, itemsize: int, target_tasks: int = 1000, memory_budget: int = 1 << 30, min_tasks: int = 1
) -> BatchPlan:
    """Plan batches so that a unit fits ``memory_budget`` bytes and there are at most ``target_tasks``.

    The budget counts one unit of raw data; a task also holds the compressed
    blocks in flight, a small fraction of that. Bands are narrowed (down to
    one block row) until there are at least ``min_tasks`` units, so that a
    small volume still spreads evenly over the workers.
    """
    if target_tasks < 1:
        raise ConfigurationError(f"Expected a target number of tasks >= 1. Got {target_tasks} instead.")
    bx, by, bz = grid.block_xyz
    ex = grid.extent_xyz[0]
    row_band_bytes = bz * by * ex * itemsize
    if memory_budget < row_band_bytes:
        raise ConfigurationError(
            f"A memory budget of {memory_budget} bytes cannot hold one row of blocks "
            f"({row_band_bytes} bytes = {bz} x {by} x {ex} voxels x {itemsize} bytes); raise it"
        )
    gz, gy, _ = grid.grid_shape
    band_rows = min(gy, memory_budget // row_band_bytes)
    wanted_bands = -(-min(min_tasks, target_tasks) // gz)  # bands per z row for min_tasks units
    band_rows = max(1, min(band_rows, gy // max(1, wanted_bands)))
    plan = BatchPlan(grid, band_rows, 1)
    return BatchPlan(grid, band_rows, -(-plan.n_units // target_tasks))


def blocks_of_unit(grid: BlockGrid, unit: Unit) -> Iterator[tuple[int, int, int, tuple[slice, slice, slice]]]:
    """Block origins (x, y, z) in a unit with the (z, y, x) slices of each inside the unit's array."""
    bx, by, bz = grid.block_xyz
    ex = grid.extent_xyz[0]
    for y in range(unit.y0, unit.y1, by):
        for x in range(0, ex, bx):
            sz, sy, sx = grid.block_shape_at(x, y, unit.z0)
            yield x, y, unit.z0, (slice(0, sz), slice(y - unit.y0, y - unit.y0 + sy), slice(x, x + sx))
