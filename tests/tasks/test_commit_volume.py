"""CommitVolume: one commit per pipeline run, exactly once; the build records its provenance."""

from __future__ import annotations

from pathlib import Path

import luigi
import numpy as np
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory
from blockfs_tasks.core import versions as V
from blockfs_tasks.tasks import CommitVolume


def build(task: luigi.Task):
    return luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")


def test_build_then_commit_once_with_provenance(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 999, (20, 30, 40)).astype(np.uint16)
    np.save(tmp_path / "src.npy", data)
    dest = str(tmp_path / "vol.blockfs")
    task = CommitVolume(volume=dest, source=str(tmp_path / "src.npy"), message="ingest",
                        run_parameters={"operator": "test", "run": 1})
    assert build(task).status == LuigiStatusCode.SUCCESS
    head = V.read_ref(dest, V.HEADS, "main").commit
    info = V.read_commit(dest, head)
    assert info.message.startswith("ingest [run ") and info.extra["run_parameters"] == {"operator": "test", "run": 1}
    assert V.resolve(dest, f"run-{task.run_key}") == head
    np.testing.assert_array_equal(Directory.open(f"{dest}@{head[:8]}")[:], data)
    provenance = Directory.open(dest).metadata["provenance"]
    assert provenance["sources"] == [str(tmp_path / "src.npy")]
    step = provenance["processing"][-1]
    assert step["method"] == "blockfs_tasks.BuildDirectory" and step["parameters"]["source"].endswith("src.npy")
    assert info.extra["upstream_task_ids"][0].startswith("BuildDirectory_")
    assert step["versions"]["numpy"] == np.__version__

    # rerun: nothing to do
    again = CommitVolume(volume=dest, source=str(tmp_path / "src.npy"), message="ingest",
                         run_parameters={"operator": "test", "run": 1})
    assert build(again).status == LuigiStatusCode.SUCCESS
    assert len(V.history(dest, V.read_ref(dest, V.HEADS, "main").commit)) == 1


def test_a_run_killed_between_commit_and_tag_commits_once(tmp_path: Path) -> None:
    dest = str(tmp_path / "vol.blockfs")
    d = Directory(16, 16, 16, np.uint8, dest, x_block_size=8, y_block_size=8, z_block_size=8)
    d.create()
    d.write_block(np.ones((8, 8, 8), np.uint8), 0, 0, 0)
    d.close()
    Directory.open(dest).commit("before")
    task = CommitVolume(volume=dest, message="nightly", run_parameters={"night": 5})
    # what run() did before a kill -9 hit it between the commit and the tag ...
    first = V.commit_working(dest, f"nightly [run {task.run_key}]", extra={"run_key": task.run_key})
    # ... and someone else committed meanwhile
    d = Directory.open(dest, "r+")
    d.write_block(np.full((8, 8, 8), 2, np.uint8), 8, 0, 0)
    d.close()
    Directory.open(dest).commit("other")
    assert not task.complete()
    assert build(task).status == LuigiStatusCode.SUCCESS
    assert V.resolve(dest, f"run-{task.run_key}") == first
    assert [c.message for c in V.history(dest, V.read_ref(dest, V.HEADS, "main").commit)] == [
        "other", f"nightly [run {task.run_key}]", "before"]
