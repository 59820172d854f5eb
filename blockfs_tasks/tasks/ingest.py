"""Ingest tasks: batches of blocks into block files, then the directory file.

``BuildDirectory --source SRC --dest OUT.blockfs`` plans the batches
(:mod:`blockfs_tasks.ingest.planning`), requires one ``WriteBlockBatch`` per batch
and merges their fragments. Each task's target is its checkpoint, published
only once its work is durable, so a killed run restarts where it stopped.

A user pipeline writes straight into blockfs by subclassing
:class:`BlockBatchTask` (compute the blocks of one batch) and
:class:`BuildVolume` (require those batches); see the README.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

import luigi
import numpy as np

from ..core.atomic import sweep_temporaries
from ..core.batch import BatchWriter, build_directory
from ..core.codec import BlockCodec
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.grid import BlockGrid
from ..ingest.errors import SourceError
from ..ingest.planning import BatchPlan, blocks_of_unit, plan_batches
from ..ingest.sources import check_extent, open_source
from .config import blockfs, ingest, io_resources
from .progress import TaskProgress
from .targets import BatchTarget, VolumeTarget

logger = logging.getLogger(__name__)


class BlockBatchTask(luigi.Task):
    """Base of a task that writes one batch of blocks straight into a blockfs volume.

    Subclasses implement :meth:`volume_spec` and :meth:`blocks`; the base
    writes the blocks into the batch's own block file and publishes its
    fragment (the target) only when all of them are durable.
    """

    dest = luigi.PathParameter(description="Directory file of the volume being written.")
    batch = luigi.IntParameter(description="Batch number: this task writes block file <dest>.<batch>.")

    threads = 1
    _progress: TaskProgress | None = None  # set when run() starts

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return io_resources()

    def volume_spec(self) -> VolumeSpec:
        """The volume's grid, dtype and codec; the same for every batch."""
        raise NotImplementedError

    def blocks(self) -> Iterable[tuple[np.ndarray, int, int, int]]:
        """Yield ``(block, x, y, z)``: (z, y, x) arrays and their origins (voxels, XYZ)."""
        raise NotImplementedError

    def batch_extent(self) -> dict[str, Any] | None:
        """What this batch covers, recorded in its fragment; None if it never changes."""
        return None

    def output(self) -> BatchTarget:
        return BatchTarget(os.path.abspath(self.dest), self.batch, self.volume_spec(), self.batch_extent())

    def report_progress(self, done: int, total: int, status: str | None = None) -> None:
        """Show ``done`` of ``total`` units of work (and ``status``) in the scheduler UI.

        For :meth:`blocks` to call during the work; the base resets progress
        when ``run()`` starts and shows 100 % when the batch is committed.
        """
        progress = self._progress
        if progress is None:  # blocks() called outside run()
            return
        if status is not None:
            progress.status(status)
        progress(done, total)

    def run(self) -> None:
        dest = os.path.abspath(self.dest)
        self._progress = TaskProgress(self, f"batch {self.batch}: starting")
        sweep_temporaries(f"{dest}.{self.batch}")
        with BatchWriter(dest, self.volume_spec(), self.batch, self.batch_extent()) as writer:
            n = writer.write_blocks(self.blocks(), self.threads)
        self._progress.finish(f"{n} blocks written")
        logger.info("%s: batch %d wrote %d blocks", dest, self.batch, n)


class BuildVolume(luigi.Task):
    """Base of the task that merges its required batches into the directory file.

    Its output is the directory file itself, so a rerun of a finished
    pipeline costs one stat.
    """

    dest = luigi.PathParameter(description="Directory file of the volume to build.")

    def volume_spec(self) -> VolumeSpec:
        """The volume's grid, dtype and codec."""
        raise NotImplementedError

    def output(self) -> VolumeTarget:
        """The directory file; an existing file that is not the planned volume raises, never counts as done."""
        return VolumeTarget(self.dest, self.volume_spec)

    def run(self) -> None:
        dest = os.path.abspath(self.dest)
        batches = [t for t in luigi.task.flatten(self.requires()) if isinstance(t, BlockBatchTask)]
        sweep_temporaries(dest)
        progress = TaskProgress(self, f"merging {len(batches)} fragments")
        done = 0

        def merged(n: int) -> None:
            nonlocal done
            done += n
            progress(done, len(batches))

        n = build_directory(dest, self.volume_spec(), [t.batch for t in batches], merged)
        progress.finish(f"{n} blocks indexed")


def _volume_spec(shape_zyx: tuple[int, ...], dtype: np.dtype, block_xyz: tuple[int, int, int], codec: BlockCodec) -> VolumeSpec:
    z, y, x = shape_zyx
    return VolumeSpec(BlockGrid((x, y, z), block_xyz), dtype, codec)


#: Keywords of a parameter the planner sets: out of the task id and log lines (insignificant) and
#: of the UI (hidden). Not private: luigi rebuilds dynamic dependencies from these values.
_PLANNED: dict[str, Any] = {"significant": False, "visibility": luigi.parameter.ParameterVisibility.HIDDEN}


class WriteBlockBatch(BlockBatchTask):
    """Read one batch of a source (a run of z rows of blocks, in y bands) and write its blocks."""

    # The planner's choices: not part of the task id, the logs or the scheduler UI (a batch is
    # named by dest and batch); the fragment records them, so a changed plan still reruns it.
    source = luigi.Parameter(**_PLANNED, description="Source volume, as BuildDirectory's --source.")
    shape_zyx = luigi.ListParameter(**_PLANNED, description="Shape (z, y, x) of the source, as planned; checked when the batch runs.")
    dtype = luigi.Parameter(**_PLANNED, description="dtype of the source, as planned.")
    block_x = luigi.IntParameter(**_PLANNED, description="Block size in x.")
    block_y = luigi.IntParameter(**_PLANNED, description="Block size in y.")
    block_z = luigi.IntParameter(**_PLANNED, description="Block size in z.")
    compression = luigi.Parameter(**_PLANNED, description="Blosc compressor.")
    compression_level = luigi.IntParameter(**_PLANNED, description="Blosc level 0-9.")
    shuffle = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING, **_PLANNED, description="Blosc byte shuffle.")
    band_rows = luigi.IntParameter(**_PLANNED, description="Block rows in y per unit of work (memory bound).")
    units_per_batch = luigi.IntParameter(**_PLANNED, description="Units of work in a batch.")
    threads = luigi.IntParameter(default=1, **_PLANNED, description="Compression threads.")

    @cached_property
    def _source(self):  # type: ignore[no-untyped-def]
        return open_source(self.source)

    @cached_property
    def _spec(self) -> VolumeSpec:
        """From the parameters alone, so that ``complete()`` never opens the source."""
        codec = BlockCodec(self.compression, self.compression_level, self.shuffle)
        shape = tuple(self.shape_zyx)
        return _volume_spec(shape, np.dtype(self.dtype), (self.block_x, self.block_y, self.block_z), codec)

    @cached_property
    def _plan(self) -> BatchPlan:
        return BatchPlan(self._spec.grid, self.band_rows, self.units_per_batch)

    def volume_spec(self) -> VolumeSpec:
        return self._spec

    def batch_extent(self) -> dict[str, Any]:
        return self._plan.describe(self.batch)

    def blocks(self) -> Iterator[tuple[np.ndarray, int, int, int]]:
        check_extent(self._source, tuple(self.shape_zyx))  # the source may have changed since planning
        if np.dtype(self._source.dtype) != np.dtype(self.dtype):
            raise SourceError(f"{self.source}: dtype is now {self._source.dtype}, planned {self.dtype}")
        units = self._plan.units(self.batch)
        grid = self._spec.grid
        by = grid.block_xyz[1]
        total = sum(-(-(unit.y1 - unit.y0) // by) for unit in units)  # block rows of the batch
        done = 0
        for unit in units:
            self.report_progress(done, total, f"planes {unit.z0}-{unit.z1}, rows {unit.y0}-{unit.y1}")
            data = self._source.read(unit.z0, unit.z1, unit.y0, unit.y1)
            row = unit.y0
            for x, y, z, where in blocks_of_unit(grid, unit):
                if y != row:  # the previous block row has been taken by the writer
                    done, row = done + 1, y
                    self.report_progress(done, total)
                yield data[where], x, y, z
            done += 1


class BuildDirectory(BuildVolume):
    """Ingest a source into a blockfs volume: plan batches, write them, build the directory."""

    source = luigi.Parameter(description="Source volume: TIFF glob or folder, 3D TIFF, file.h5:dataset, .zarr, .npy or synthetic:ZxYxX.")
    extent_xyz = luigi.ListParameter(default=[], description="Expected extent [x, y, z] of the source; [] = no check.")

    @cached_property
    def _spec(self) -> VolumeSpec:
        """The planned volume: the source's shape and dtype (one header read), the [blockfs] format."""
        config = blockfs()
        with open_source(self.source) as src:
            if self.extent_xyz:
                x, y, z = self.extent_xyz
                check_extent(src, (z, y, x))
            shape, dtype = src.shape, src.dtype
        bz = config.z_block_size or config.block_size
        codec = BlockCodec(config.compression, config.compression_level, config.shuffle)
        return _volume_spec(shape, dtype, (config.block_size, config.block_size, bz), codec)

    @cached_property
    def _batches(self) -> list[WriteBlockBatch]:
        plan_config = ingest()
        spec = self._spec
        if plan_config.memory_budget_mb < 1:
            raise ConfigurationError("ingest.memory_budget_mb must be >= 1")
        with open_source(self.source) as src:
            src.check()  # every file's header (TIFF planes): a bad one fails here, once, before any batch
        plan = plan_batches(
            spec.grid, spec.dtype.itemsize, plan_config.target_tasks, plan_config.memory_budget_mb << 20,
            plan_config.min_tasks,
        )
        logger.info("%s: %d batches of %d units (%d block rows per unit)", self.dest, plan.n_batches, plan.units_per_batch, plan.band_rows)
        (ex, ey, ez), (bx, by, bz) = spec.grid.extent_xyz, spec.grid.block_xyz
        codec = spec.codec
        return [
            WriteBlockBatch(
                dest=self.dest, batch=b, source=self.source, shape_zyx=[ez, ey, ex], dtype=spec.dtype.name,
                block_x=bx, block_y=by, block_z=bz,
                compression=codec.compression, compression_level=codec.level, shuffle=codec.shuffle,
                band_rows=plan.band_rows, units_per_batch=plan.units_per_batch, threads=plan_config.threads,
            )
            for b in range(plan.n_batches)
        ]

    def requires(self) -> list[WriteBlockBatch]:
        return self._batches

    def volume_spec(self) -> VolumeSpec:
        return self._spec
