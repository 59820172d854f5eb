"""Pyramid tasks: groups of levels from one read of their base, in checkpointed batches, then the ``info``.

``Downsample --out myvol`` turns a volume (``--volume``, or the one
``BuildDirectory`` builds) into the multi-level layout of
:mod:`blockfs_tasks.pyramid` (``myvol/info``, ``myvol/1_1_1/...``). The
levels are cut into groups (:func:`~blockfs_tasks.pyramid.plan_groups`): one
``DownsampleBatch`` reads a part of a group's base level once and writes one
batch (block file + fragment) of *every* level of the group; one
``BuildLevel`` per level merges its batches; the ``info`` file, written last,
is the pipeline's final target.

Without ``--volume``, ``Downsample`` asks its ``BuildDirectory`` to pre-reduce
level 1: each ingest batch leaves a slab of level 1 beside its block file
(:mod:`blockfs_tasks.pyramid.prereduce`), the first group reads level 1 from
the slabs instead of decoding level 0 (falling back to decoding on any failed
check), and the slabs are removed once the ``info`` is written.

``--out s3://bucket/path/pyramid`` writes the same objects into a bucket:
level 0 is uploaded, each batch is staged locally and uploaded (block file,
then fragment: :mod:`.remote`), each level's directory object and then the
``info`` object are written last, and higher levels read their base level
from the bucket.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from functools import cached_property
from typing import Any

import luigi

from ..core.batch import BatchWriter
from ..core.bytesource import is_remote
from ..core.directory import Directory
from ..core.format import VolumeSpec, read_spec
from ..pyramid import (
    LevelGroup,
    Pyramid,
    downsample_group_batch,
    group_batches,
    group_of,
    level_spec,
    plan_groups,
    plan_pyramid,
    prepare_pyramid,
    write_pyramid_info,
)
from ..pyramid.prereduce import Prereduce, level1_reader, remove_slabs
from .config import io_resources
from .export import FromVolume
from .ingest import _PLANNED, BuildDirectory, BuildVolume
from .progress import TaskProgress
from .remote import (
    RemoteBatchTarget,
    RemotePyramidInfoTarget,
    RemoteVolumeTarget,
    VolumeParameter,
    batch_path,
    local_or_url,
    publish_if_remote,
)
from .targets import BatchTarget, PyramidInfoTarget, VolumeTarget

REGION_MB = 64  # base-level MiB per read: 256^3 uint16 -> two levels of 64^3 blocks per read
# Tasks per group when it has the blocks: two rounds on two workers keep both busy to the end, and each
# task costs a forked process and two batch commits (1 GiB, --workers 2: 4 instead of 8 cut the CPU of
# Downsample --volume and of the one-run pipeline, at the same or lower wall time).
MIN_TASKS = 4


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
    out = VolumeParameter(description="Folder of the pyramid (or s3://..., gs://...).")
    # Planner choices: out of the task ids, logs and UI (level0 and out name the pyramid);
    # a batch's fragment records its level and blocks_per_batch, so a changed plan reruns it.
    mode = luigi.Parameter(**_PLANNED, description="mean or mode.")
    resolution_nm = luigi.ListParameter(**_PLANNED, description="Voxel size [x, y, z] of level 0 in nm.")
    max_levels = luigi.IntParameter(**_PLANNED, description="Most levels; 0 = until one block.")
    blocks_per_batch = luigi.IntParameter(**_PLANNED, description="Output blocks per batch task.")
    region_mb = luigi.IntParameter(**_PLANNED, default=REGION_MB, description="MiB of base level per read.")
    min_tasks = luigi.IntParameter(**_PLANNED, default=MIN_TASKS, description="Least tasks per group.")

    def plan_params(self) -> dict[str, Any]:
        names = ("level0", "out", "mode", "resolution_nm", "max_levels", "blocks_per_batch", "region_mb", "min_tasks")
        return {name: getattr(self, name) for name in names}

    @cached_property
    def groups(self) -> list[LevelGroup]:
        return plan_groups(self.plan, self.region_mb << 20, self.min_tasks)

    def batches_of(self, group: LevelGroup) -> list[list[tuple[int, int, int]]]:
        return group_batches(self.plan, group, self.blocks_per_batch, self.min_tasks)

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

    def output(self) -> VolumeTarget | RemoteVolumeTarget:
        path = self.plan.path(0)
        if is_remote(path):
            return RemoteVolumeTarget(path, lambda: read_spec(self.level0))
        return VolumeTarget(path, lambda: read_spec(self.level0))

    def run(self) -> None:
        prepare_pyramid(self.plan, self.level0, "link")


class DownsampleBatch(_PyramidPlan):
    """Batch ``batch`` of every level of the group whose top is ``level``, from one read of the group's base.

    Complete when each level's fragment of this batch is published; a rerun
    after a crash rewrites them all (the same bytes: the work is deterministic).
    """

    level = luigi.IntParameter(description="Top level of the group written, >= 1.")
    batch = luigi.IntParameter(description="Batch number: block file <level>.blockfs.<batch> of each level.")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # luigi declares resources a plain attribute
        return io_resources()

    @property
    def group(self) -> LevelGroup:
        return group_of(self.groups, self.level)

    def requires(self) -> luigi.Task:
        base = self.group.base
        if base == 0:
            return PlaceLevel0(**self.plan_params())
        return BuildLevel(**self.plan_params(), dest=self.plan.path(base), level=base)

    def batch_extent(self, level: int) -> dict[str, Any]:
        group = self.group
        return {"level": level, "group": [group.base, group.top], "batch": self.batch,
                "blocks_per_batch": self.blocks_per_batch, "region_mb": self.region_mb,
                "min_tasks": self.min_tasks, "mode": self.mode}

    def output(self) -> list[BatchTarget | RemoteBatchTarget]:
        targets: list[BatchTarget | RemoteBatchTarget] = []
        for level in self.group.levels:
            path, spec, extent = self.plan.path(level), self.spec_of(level), self.batch_extent(level)
            remote = is_remote(path)
            targets.append((RemoteBatchTarget if remote else BatchTarget)(path, self.batch, spec, extent))
        return targets

    def level1_reader(self) -> Any:
        """Level 1 from the slabs ingest left beside level 0 (group base 0 only), or None to decode level 0."""
        if self.group.base != 0 or is_remote(self.level0) or len(self.plan.levels) < 2:
            return None
        prereduce = Prereduce(self.plan.mode, self.plan.levels[1].step_xyz)
        return level1_reader(Directory.open(self.level0), prereduce)

    def run(self) -> None:
        group = self.group
        origins = self.batches_of(group)[self.batch]
        progress = TaskProgress(self, f"levels {group.base + 1}-{group.top}: {len(origins)} regions")
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            progress(done, len(origins))

        specs = [self.spec_of(level) for level in group.levels]
        with ExitStack() as stack:
            writers = [
                stack.enter_context(
                    BatchWriter(batch_path(self.plan.path(level)), spec, self.batch, self.batch_extent(level))
                )
                for level, spec in zip(group.levels, specs, strict=True)
            ]
            written = downsample_group_batch(
                self.plan.open(group.base), specs, writers, origins, self.plan.mode, step, self.level1_reader()
            )
        for level in group.levels:  # a bucket's levels: upload the staged batches (each fragment last)
            publish_if_remote(self.plan.path(level), self.batch)
        progress.finish(f"{sum(written)} blocks written")


class BuildLevel(_PyramidPlan, BuildVolume):
    """Level ``level`` of the pyramid: its batches merged into its directory file."""

    level = luigi.IntParameter(description="Pyramid level, >= 1.")

    def requires(self) -> list[DownsampleBatch]:
        group = group_of(self.groups, self.level)
        n = len(self.batches_of(group))
        return [DownsampleBatch(**self.plan_params(), level=group.top, batch=b) for b in range(n)]

    def volume_spec(self) -> VolumeSpec:
        return self.spec_of(self.level)

    def batch_numbers(self) -> list[int]:
        return [t.batch for t in self.requires()]


class Downsample(FromVolume):
    """Build the whole pyramid of a volume; the target is the pyramid's ``info`` file."""

    out = VolumeParameter(description="Folder of the pyramid (myvol/info, myvol/1_1_1/...), or s3://..., gs://...")
    region_mb = luigi.IntParameter(
        default=REGION_MB, significant=False,
        description="MiB of a base level one DownsampleBatch reads at a time: it writes every level whose blocks "
        "fit in that region from one read (a task holds about 2.5x this).",
    )
    min_tasks = luigi.IntParameter(
        default=MIN_TASKS, significant=False,
        description="Split a group of levels into at least this many tasks when it has the blocks (busy workers).",
    )

    def requires(self) -> luigi.Task:
        if self.volume:
            return self.volume_task()
        config = pyramid()  # the ingest batches pre-reduce level 1 from the raw data they hold (pyramid.prereduce)
        level1 = {"mode": config.mode, "resolution_nm": list(config.resolution_nm), "max_levels": config.max_levels}
        return BuildDirectory(level1=level1)

    def _plan_params(self) -> dict[str, Any]:
        config = pyramid()
        return {
            "level0": os.path.abspath(self.volume_path()), "out": local_or_url(self.out), "mode": config.mode,
            "resolution_nm": list(config.resolution_nm), "max_levels": config.max_levels,
            "blocks_per_batch": config.blocks_per_batch, "region_mb": self.region_mb, "min_tasks": self.min_tasks,
        }

    def output(self) -> PyramidInfoTarget | RemotePyramidInfoTarget:
        """The ``info`` file (or object); one describing another pyramid raises, never counts as done."""
        out = local_or_url(self.out)
        planned = lambda: PlaceLevel0(**self._plan_params()).plan.to_info()  # noqa: E731
        if is_remote(out):
            return RemotePyramidInfoTarget(f"{out.rstrip('/')}/info", planned)
        return PyramidInfoTarget(os.path.join(out, "info"), planned)

    def run(self) -> Any:
        params = self._plan_params()
        plan = PlaceLevel0(**params).plan
        levels = [BuildLevel(**params, dest=plan.path(i), level=i) for i in range(1, len(plan.levels))]
        yield levels or [PlaceLevel0(**params)]  # dynamic: the plan needs the volume
        write_pyramid_info(plan)
        if not is_remote(params["level0"]):
            remove_slabs(params["level0"])  # level 1 is built: the ingest batches' slabs have served
