"""Task ids and log lines: short, unique across batches, stable between two plans of the same run."""

from __future__ import annotations

from pathlib import Path

import luigi
import numpy as np

from blockfs_tasks.core import Directory
from blockfs_tasks.tasks import BuildDirectory, BuildLevel, Downsample, DownsampleBatch

from .conftest import luigi_settings


def fresh() -> None:
    luigi.task_register.Register.clear_instance_cache()  # a new process plans again


def test_batch_ids_unique_stable_and_short(tmp_path: Path):
    dest = str(tmp_path / "v.blockfs")
    fresh()
    first = BuildDirectory(source="synthetic:768x256x150", dest=dest).requires()
    fresh()
    second = BuildDirectory(source="synthetic:768x256x150", dest=dest).requires()
    assert len(first) > 10
    assert [t.task_id for t in first] == [t.task_id for t in second]
    assert len({t.task_id for t in first}) == len(first)
    for t in first:
        assert repr(t) == f"WriteBlockBatch(dest={dest}, batch={t.batch})"  # the log line's task
        assert t.to_str_params(only_public=True) == {"dest": dest, "batch": str(t.batch)}  # what luigid's UI shows


def test_pyramid_ids_unique_and_stable(tmp_path: Path):
    # 31 MiB of level 0, never written: planning reads only the header; big enough for groups of batches
    d = Directory(320, 320, 160, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.close()
    with luigi_settings({("pyramid", "blocks_per_batch"): 3}):
        def plan() -> list[luigi.Task]:
            fresh()
            downsample = Downsample(volume=str(tmp_path / "v.blockfs"), out=str(tmp_path / "pyr"), min_tasks=8)
            params = downsample._plan_params()
            levels = [BuildLevel(**params, dest=str(tmp_path / "pyr" / f"l{i}.blockfs"), level=i) for i in (1, 2)]
            assert levels[0].requires() == levels[1].requires()  # one group: both levels from one read
            return levels + levels[0].requires()

        first, second = plan(), plan()
    batches = [t for t in first if isinstance(t, DownsampleBatch)]
    assert len(batches) > 4
    assert [t.task_id for t in first] == [t.task_id for t in second]
    assert len({t.task_id for t in first}) == len(first)
    assert all(len(repr(t)) < 120 + 3 * len(str(tmp_path)) for t in first)
    assert "blocks_per_batch" not in repr(batches[0]) and "resolution_nm" not in repr(batches[0])
