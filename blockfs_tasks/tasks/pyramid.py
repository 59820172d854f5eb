"""Pyramid tasks: level k+1 from level k in checkpointed batches, then the ``info`` file.

``Downsample --out myvol`` turns a volume (``--volume``, or the one
``BuildDirectory`` builds) into the multi-level layout of
:mod:`blockfs_tasks.pyramid` (``myvol/info``, ``myvol/1_1_1/...``): one
``DownsampleBatch`` per batch of a level, one ``BuildLevel`` per level, and
the ``info`` file, written last, as the pipeline's final target.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import luigi

from ..core.batch import BatchWriter
from ..core.format import VolumeSpec, read_spec
from ..pyramid import (
    Pyramid,
    downsample_batch,
    level_batches,
    level_spec,
    plan_pyramid,
    prepare_pyramid,
    write_pyramid_info,
)
from .export import FromVolume
from .ingest import _PLANNED, BlockBatchTask, BuildVolume
from .progress import running
from .targets import PyramidInfoTarget, VolumeTarget


class pyramid(luigi.Config):  # lower case: named after its luigi.cfg section
    """How pyramids are planned and split into tasks."""

    mode = luigi.ChoiceParameter(
        choices=["mean", "mode"], default="mean",
        description="mean for images, mode (most frequent label) for segmentations.",
    )
    resolution_nm = luigi.ListParameter(
        default=(1.0, 1.0, 1.0), description="Voxel size [x, y, z] of level 0 in nm; decides anisotropic steps."
    )
    max_levels = luigi.IntParameter(
        default=0, description="Most levels, level 0 included; 0 = until a level fits in one block."
    )
    blocks_per_batch = luigi.IntParameter(default=256, description="Output blocks per DownsampleBatch task.")


class _PyramidPlan(luigi.Task):
    """Mixin: the parameters that fix a pyramid's plan, and the plan."""

    level0 = luigi.PathParameter(description="Directory file of level 0.")
    out = luigi.PathParameter(description="Folder of the pyramid.")
    # Planner choices: out of the task ids, logs and UI (level0 and out name the pyramid);
    # a batch's fragment records its level and blocks_per_batch, so a changed plan reruns it.
    mode = luigi.Parameter(**_PLANNED, description="mean or mode.")
    resolution_nm = luigi.ListParameter(**_PLANNED, description="Voxel size [x, y, z] of level 0 in nm.")
    max_levels = luigi.IntParameter(**_PLANNED, description="Most levels; 0 = until one block.")
    blocks_per_batch = luigi.IntParameter(**_PLANNED, description="Output blocks per batch task.")

    def plan_params(self) -> dict[str, Any]:
        names = ("level0", "out", "mode", "resolution_nm", "max_levels", "blocks_per_batch")
        return {name: getattr(self, name) for name in names}

    @cached_property
    def plan(self) -> Pyramid:
        return plan_pyramid(
            self.level0, self.out, tuple(self.resolution_nm), self.mode, self.max_levels or None, level0="link"
        )

    def spec_of(self, level: int) -> VolumeSpec:
        level0 = read_spec(self.level0)
        return level_spec(level0, self.plan.levels[level], self.plan.mode)


class PlaceLevel0(_PyramidPlan):
    """Level 0 inside the pyramid folder (a hard link, or a copy across filesystems)."""

    def output(self) -> VolumeTarget:
        return VolumeTarget(self.plan.path(0), lambda: read_spec(self.level0))

    def run(self) -> None:
        prepare_pyramid(self.plan, self.level0, "link")


class DownsampleBatch(_PyramidPlan, BlockBatchTask):
    """One batch of blocks of level ``level`` (>= 1), computed from level ``level - 1``."""

    level = luigi.IntParameter(description="Pyramid level written, >= 1.")

    def requires(self) -> luigi.Task:
        if self.level == 1:
            return PlaceLevel0(**self.plan_params())
        return BuildLevel(**self.plan_params(), dest=self.plan.path(self.level - 1), level=self.level - 1)

    def volume_spec(self) -> VolumeSpec:
        return self.spec_of(self.level)

    def batch_extent(self) -> dict[str, Any]:
        return {"level": self.level, "batch": self.batch, "blocks_per_batch": self.blocks_per_batch, "mode": self.mode}

    def run(self) -> None:
        origins = level_batches(self.plan, self.level, self.blocks_per_batch)[self.batch]
        task = running(self)
        task.set_status_message(f"level {self.level}: {len(origins)} blocks")
        spec = self.volume_spec()
        with BatchWriter(os.path.abspath(self.dest), spec, self.batch, self.batch_extent()) as writer:
            downsample_batch(self.plan.open(self.level - 1), spec, writer, origins, self.plan.mode)
        task.set_progress_percentage(100)


class BuildLevel(_PyramidPlan, BuildVolume):
    """Level ``level`` of the pyramid: its batches merged into its directory file."""

    level = luigi.IntParameter(description="Pyramid level, >= 1.")

    def requires(self) -> list[DownsampleBatch]:
        n = len(level_batches(self.plan, self.level, self.blocks_per_batch))
        return [
            DownsampleBatch(**self.plan_params(), dest=self.dest, level=self.level, batch=b) for b in range(n)
        ]

    def volume_spec(self) -> VolumeSpec:
        return self.spec_of(self.level)


class Downsample(FromVolume):
    """Build the whole pyramid of a volume; the target is the pyramid's ``info`` file."""

    out = luigi.PathParameter(description="Folder of the pyramid (myvol/info, myvol/1_1_1/...).")

    def requires(self) -> luigi.Task:
        return self.volume_task()

    def _plan_params(self) -> dict[str, Any]:
        config = pyramid()
        return {
            "level0": os.path.abspath(self.volume_path()), "out": os.path.abspath(self.out), "mode": config.mode,
            "resolution_nm": list(config.resolution_nm), "max_levels": config.max_levels,
            "blocks_per_batch": config.blocks_per_batch,
        }

    def output(self) -> PyramidInfoTarget:
        """The ``info`` file; one describing another pyramid raises, never counts as done."""
        return PyramidInfoTarget(
            os.path.join(os.path.abspath(self.out), "info"), lambda: PlaceLevel0(**self._plan_params()).plan.to_info()
        )

    def run(self) -> Any:
        params = self._plan_params()
        plan = PlaceLevel0(**params).plan
        levels = [BuildLevel(**params, dest=plan.path(i), level=i) for i in range(1, len(plan.levels))]
        yield levels or [PlaceLevel0(**params)]  # dynamic: the plan needs the volume
        write_pyramid_info(plan)
