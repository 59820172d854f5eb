"""Downsample through Luigi gives the same pyramid as the plain build, and a rerun does nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import luigi
import numpy as np
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory
from blockfs_tasks.pyramid import Pyramid, build_pyramid
from blockfs_tasks.tasks import Downsample

from .conftest import luigi_settings


def test_downsample_tasks_match_plain_build(tmp_path: Path):
    data = np.random.default_rng(2).integers(0, 3000, (40, 70, 90)).astype(np.uint16)
    d = Directory(90, 70, 40, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.write_blocks((data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in d.grid.origins())
    d.close()
    with luigi_settings({("pyramid", "blocks_per_batch"): 5, ("pyramid", "resolution_nm"): "[1.0, 1.0, 2.0]"}):
        task = Downsample(volume=str(tmp_path / "v.blockfs"), out=str(tmp_path / "pyr"))
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
        assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
        before = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "pyr").rglob("*")}
        luigi.task_register.Register.clear_instance_cache()
        luigi.build([Downsample(volume=str(tmp_path / "v.blockfs"), out=str(tmp_path / "pyr"))],
                    local_scheduler=True, log_level="WARNING")
        assert {p: os.stat(p).st_mtime_ns for p in (tmp_path / "pyr").rglob("*")} == before

    build_pyramid(str(tmp_path / "v.blockfs"), str(tmp_path / "plain"), resolution_nm_xyz=(1.0, 1.0, 2.0))
    luigi_pyr, plain = Pyramid.from_info(str(tmp_path / "pyr")), Pyramid.from_info(str(tmp_path / "plain"))
    assert len(luigi_pyr.levels) == len(plain.levels) > 2
    assert json.loads((tmp_path / "pyr" / "info").read_text())["scales"][1]["key"] == "2_2_1"
    for i in range(len(plain.levels)):
        np.testing.assert_array_equal(luigi_pyr.open(i)[:], plain.open(i)[:])
