"""Ingest tasks: batches of blocks into block files, then the directory file.

``BuildDirectory --source SRC --dest OUT.blockfs`` plans the batches
(:mod:`blockfs_tasks.ingest.planning`), requires one ``WriteBlockBatch`` per batch
and merges their fragments. Each task's target is its checkpoint, published
only once its work is durable, so a killed run restarts where it stopped.
The work itself is :mod:`blockfs_tasks.ingest` (usable without luigi); these
tasks name its inputs and targets.

A user pipeline writes straight into blockfs by subclassing
:class:`BlockBatchTask` (compute the blocks of one batch) and
:class:`BuildVolume` (require those batches); see the README.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import cached_property
from typing import Any, cast

import luigi
import numpy as np
from luigi.freezing import recursively_unfreeze

from ..core.atomic import sweep_temporaries
from ..core.batch import build_directory, remove_other_batches
from ..core.bytesource import is_remote
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.provenance import processing_step, with_step
from ..ingest.planning import BatchPlan, pipeline_codec, plan_batches, plan_volume
from ..ingest.sources import Source, check_extent, open_source
from ..ingest.write import batch_blocks, write_batch_blocks
from ..pyramid.prereduce import level1_slab, slab_name
from .config import blockfs, ingest, io_resources
from .progress import TaskProgress
from .remote import (
    RemoteBatchTarget,
    RemoteVolumeTarget,
    VolumeParameter,
    build_remote_volume,
    local_or_url,
    write_remote_batch,
)
from .targets import BatchTarget, VolumeTarget

logger = logging.getLogger(__name__)


class BlockBatchTask(luigi.Task):
    """Base of a task that writes one batch of blocks straight into a blockfs volume.

    Subclasses implement :meth:`volume_spec` and :meth:`blocks`; the base
    writes the blocks into the batch's own block file and publishes its
    fragment (the target) only when all of them are durable.
    """

    dest = VolumeParameter(description="Directory file of the volume being written (or s3://..., gs://...).")
    batch = luigi.IntParameter(description="Batch number: this task writes block file <dest>.<batch>.")

    n_threads = 1  # threads compressing blocks
    # Set when run() starts. Typed by a cast, not an annotation: luigi's Task is a dataclass_transform,
    # so an annotated class attribute would become an __init__ field and hide the luigi parameters.
    _progress = cast("TaskProgress | None", None)

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # luigi declares resources a plain attribute
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

    def output(self) -> BatchTarget | RemoteBatchTarget:
        dest = local_or_url(self.dest)
        if is_remote(dest):
            return RemoteBatchTarget(dest, self.batch, self.volume_spec(), self.batch_extent())
        return BatchTarget(dest, self.batch, self.volume_spec(), self.batch_extent())

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
        dest = local_or_url(self.dest)
        self._progress = TaskProgress(self, f"batch {self.batch}: starting")
        write = write_remote_batch if is_remote(dest) else write_batch_blocks
        n = write(dest, self.volume_spec(), self.batch, self.blocks(), self.batch_extent(), self.n_threads)
        self._progress.finish(f"{n} blocks written")
        logger.info("%s: batch %d wrote %d blocks", dest, self.batch, n)


class BuildVolume(luigi.Task):
    """Base of the task that merges its required batches into the directory file.

    Its output is the directory file itself, so a rerun of a finished
    pipeline costs one stat.
    """

    dest = VolumeParameter(description="Directory file of the volume to build (or s3://..., gs://...).")

    def volume_spec(self) -> VolumeSpec:
        """The volume's grid, dtype and codec."""
        raise NotImplementedError

    def output(self) -> VolumeTarget | RemoteVolumeTarget:
        """The directory file; an existing file that is not the planned volume raises, never counts as done."""
        if is_remote(local_or_url(self.dest)):
            return RemoteVolumeTarget(local_or_url(self.dest), self.volume_spec)
        return VolumeTarget(self.dest, self.volume_spec)

    def batch_numbers(self) -> list[int]:
        """The batches merged: those of the required batch tasks."""
        return [t.batch for t in luigi.task.flatten(self.requires()) if isinstance(t, BlockBatchTask)]

    def run(self) -> None:
        dest = local_or_url(self.dest)
        batches = self.batch_numbers()
        if not is_remote(dest):
            sweep_temporaries(dest)
        progress = TaskProgress(self, f"merging {len(batches)} fragments")
        done = 0

        def merged(n: int) -> None:
            nonlocal done
            done += n
            progress(done, len(batches))

        spec, step = self.volume_spec(), self.provenance_step()
        if step is not None:
            spec = replace(spec, metadata=with_step(spec.metadata, step, self.provenance_sources()))
        build = build_remote_volume if is_remote(dest) else build_directory
        n = build(dest, spec, batches, merged)
        progress.finish(f"{n} blocks indexed")

    def provenance_sources(self) -> list[str]:
        """Where the volume's data came from (recorded in its metadata's provenance)."""
        return []

    def provenance_step(self) -> dict[str, Any] | None:
        """This build as a provenance record (None: none kept): parameters, task id, package versions."""
        return None


#: Keywords of a parameter the planner sets: out of the task id and log lines (insignificant) and
#: of the UI (hidden). Not private: luigi rebuilds dynamic dependencies from these values.
_PLANNED: dict[str, Any] = {"significant": False, "visibility": luigi.parameter.ParameterVisibility.HIDDEN}


class WriteBlockBatch(BlockBatchTask):
    """Read one batch of a source (a run of z rows of blocks, in y bands) and write its blocks."""

    # The planner's choices: not part of the task id, the logs or the scheduler UI (a batch is
    # named by dest and batch); the fragment records them, so a changed plan still reruns it.
    source = luigi.Parameter(**_PLANNED, description="Source volume, as BuildDirectory's --source.")
    plan = luigi.DictParameter(
        **_PLANNED,
        description="The plan: 'volume' (extent, block size, dtype and codec, as the directory file's "
        "metadata) and the batch layout 'band_rows' (block rows in y per unit of work) and "
        "'units_per_batch'.",
    )
    n_threads = luigi.IntParameter(default=1, **_PLANNED, description="Compression threads.")
    level1 = cast("Any", luigi.DictParameter(
        default={}, **_PLANNED,
        description="Pyramid whose level 1 to pre-reduce ({'mode', 'resolution_nm', 'max_levels'}; {}: none).",
    ))

    @staticmethod
    def plan_of(spec: VolumeSpec, plan: BatchPlan) -> dict[str, Any]:
        """The ``plan`` parameter of a batch of ``plan`` over the volume ``spec``."""
        return {"volume": spec.to_dict(), "band_rows": plan.band_rows, "units_per_batch": plan.units_per_batch}

    # The planner's open source (see share_source); None: open ``source`` on first use.
    _shared_source = cast("Source | None", None)

    def share_source(self, source: Source) -> None:
        """Read through ``source``, the planner's (open and checked), instead of opening ``self.source`` again.

        The batches of a run then list a TIFF stack and parse its plane headers
        once, in the planner, and forked workers inherit both; a plane changed
        since is parsed and checked again when it is read.
        """
        self._shared_source = source

    @cached_property
    def _source(self) -> Source:
        return self._shared_source if self._shared_source is not None else open_source(self.source)

    @cached_property
    def _spec(self) -> VolumeSpec:
        """From the parameters alone, so that ``complete()`` never opens the source."""
        return VolumeSpec.from_dict(recursively_unfreeze(self.plan["volume"]), "WriteBlockBatch plan")

    @cached_property
    def _plan(self) -> BatchPlan:
        return BatchPlan(self._spec.grid, self.plan["band_rows"], self.plan["units_per_batch"])

    def volume_spec(self) -> VolumeSpec:
        return self._spec

    def batch_extent(self) -> dict[str, Any]:
        return self._plan.describe(self.batch)

    def blocks(self) -> Iterator[tuple[np.ndarray, int, int, int]]:
        dest = local_or_url(self.dest)
        slab = None if is_remote(dest) else level1_slab(dest, self.batch, self._spec, dict(self.level1))
        blocks = batch_blocks(
            self._source, self._spec, self._plan, self.batch, self.report_progress, None if slab is None else slab.add
        )
        return blocks if slab is None else slab.around(blocks)  # the slab is published before the fragment


class BuildDirectory(BuildVolume):
    """Ingest a source into a blockfs volume: plan batches, write them, build the directory."""

    source = luigi.Parameter(
        description="Source volume: TIFF glob or folder, 3D TIFF, file.h5:dataset, .zarr, .npy or synthetic:ZxYxX."
    )
    extent_xyz = luigi.ListParameter(
        default=(), description="Expected extent [x, y, z] of the source; [] = no check."
    )
    level1 = cast("Any", luigi.DictParameter(  # set by Downsample: its batches pre-reduce level 1 (pyramid.prereduce)
        default={}, **_PLANNED,
        description="Pyramid whose level 1 to pre-reduce ({'mode', 'resolution_nm', 'max_levels'}; {}: none).",
    ))

    @cached_property
    def _spec(self) -> VolumeSpec:
        """The planned volume: the source's shape and dtype (one header read), the [blockfs] format."""
        config = blockfs()
        bz = config.z_block_size or config.block_size
        codec = pipeline_codec(config.compression, config.compression_level, config.shuffle, config.bitround_keepbits)
        src = self._source
        try:
            if self.extent_xyz:
                x, y, z = self.extent_xyz
                check_extent(src, (z, y, x))
            return plan_volume(src, (config.block_size, config.block_size, bz), codec)
        finally:
            src.close()  # releases file handles only; a later read reopens them

    @cached_property
    def _source(self) -> Source:
        """The source, opened once: the plan reads its shape, the batch tasks share it (see share_source)."""
        return open_source(self.source)

    @cached_property
    def _batches(self) -> list[WriteBlockBatch]:
        plan_config = ingest()
        spec = self._spec
        if plan_config.memory_budget_mb < 1:
            raise ConfigurationError("ingest.memory_budget_mb must be >= 1")
        src = self._source
        src.check()  # every file's header (TIFF planes): a bad one fails here, once, before any batch
        src.close()  # no open handle is inherited: each task reopens lazily what it reads
        plan = plan_batches(
            spec.grid, spec.dtype.itemsize, plan_config.target_tasks, plan_config.memory_budget_mb << 20,
            plan_config.min_tasks,
        )
        logger.info(
            "%s: %d batches of %d units (%d block rows per unit)",
            self.dest, plan.n_batches, plan.units_per_batch, plan.band_rows,
        )
        planned = WriteBlockBatch.plan_of(spec, plan)
        batches = [
            WriteBlockBatch(
                dest=self.dest, batch=b, source=self.source, plan=planned, n_threads=plan_config.threads,
                level1=self.level1,
            )
            for b in range(plan.n_batches)
        ]
        for task in batches:
            task.share_source(src)
        return batches

    def requires(self) -> list[WriteBlockBatch]:
        return self._batches

    def run(self) -> None:
        super().run()
        dest = local_or_url(self.dest)
        if not is_remote(dest):  # batches an earlier plan committed (e.g. before [ingest] min_tasks changed)
            for number in remove_other_batches(dest, self.batch_numbers()):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(slab_name(os.path.abspath(dest), number))

    def provenance_sources(self) -> list[str]:
        return [self.source]

    def provenance_step(self) -> dict[str, Any] | None:
        # Parameters but dest: the volume's own path is not where it came from, and a volume rebuilt
        # elsewhere (or resumed) must have the same bytes. The task id hashes dest too, so the family is
        # kept; a CommitVolume of the run records the full task ids in its commit.
        params = {k: v for k, v in self.to_str_params().items() if k not in ("dest", "level1")}
        return processing_step(f"blockfs_tasks.{self.get_task_family()}", params)

    def volume_spec(self) -> VolumeSpec:
        return self._spec
