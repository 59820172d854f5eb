"""Ingest through Luigi: the volume equals the source, and equals a live-API volume."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np
import pytest
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory, FormatError, MissingFileError
from blockfs_tasks.core.batch import build_directory
from blockfs_tasks.tasks import BuildDirectory, WriteBlockBatch

from .conftest import Setter, luigi_settings


@pytest.fixture
def small_blocks() -> Iterator[Setter]:
    """Run with 16-voxel blocks and at most 5 tasks (several z rows per batch); yields a setter for more."""
    with luigi_settings({("blockfs", "block_size"): 16, ("ingest", "target_tasks"): 5}) as set_:
        yield set_


def volume_array(shape=(37, 50, 70), dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 4000, shape).astype(dtype)


def build(task: luigi.Task):
    return luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")


def test_ingest_npy_equals_source_and_rerun_does_nothing(tmp_path: Path, small_blocks):
    data = volume_array()
    np.save(tmp_path / "src.npy", data)
    dest = tmp_path / "vol.blockfs"
    task = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(dest))
    result = build(task)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    batches = task.requires()
    assert 1 < len(batches) <= 5
    d = Directory.open(dest)
    np.testing.assert_array_equal(d[:], data)
    assert len(d) == d.grid.n_blocks

    before = {p: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()}
    result = build(BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(dest)))
    assert result.status == LuigiStatusCode.SUCCESS
    assert "complete" in result.summary_text or "already done" in result.summary_text
    assert {p: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()} == before


def test_luigi_volume_reads_like_a_live_api_volume(tmp_path: Path, small_blocks):
    data = volume_array((20, 33, 40), np.uint8)
    np.save(tmp_path / "src.npy", data)
    task = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(tmp_path / "a.blockfs"))
    assert build(task).status == LuigiStatusCode.SUCCESS
    live = Directory(40, 33, 20, np.uint8, tmp_path / "b.blockfs", 16, 16, 16)
    live.create()
    for x, y, z in live.grid.origins():
        sz, sy, sx = live.get_block_size(x, y, z)
        live.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    live.close()
    a, b = Directory.open(tmp_path / "a.blockfs"), Directory.open(tmp_path / "b.blockfs")
    np.testing.assert_array_equal(a[:], b[:])
    np.testing.assert_array_equal(a.index["crc32c"], b.index["crc32c"])  # same bytes, block by block


def test_missing_source_fails_and_writes_nothing(tmp_path: Path):
    result = build(BuildDirectory(source=str(tmp_path / "nope_*.tiff"), dest=str(tmp_path / "v.blockfs")))
    assert result.status != LuigiStatusCode.SUCCESS
    assert not (tmp_path / "v.blockfs").exists()


def test_declared_extent_mismatch_fails(tmp_path: Path):
    np.save(tmp_path / "src.npy", volume_array((4, 5, 6)))
    task = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(tmp_path / "v.blockfs"), extent_xyz=[6, 5, 5])
    assert build(task).status != LuigiStatusCode.SUCCESS
    assert not (tmp_path / "v.blockfs").exists()


def test_corrupt_fragment_fails_build_and_names_it(tmp_path: Path, small_blocks):
    np.save(tmp_path / "src.npy", volume_array())
    task = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(tmp_path / "v.blockfs"))
    assert build(task.requires()[1]).status == LuigiStatusCode.SUCCESS
    fragment = tmp_path / "v.blockfs.1.fragment"
    raw = bytearray(fragment.read_bytes())
    raw[-5] ^= 0xFF  # inside the last entry
    fragment.write_bytes(bytes(raw))
    spec = task.volume_spec()
    with pytest.raises(FormatError, match="v.blockfs.1.fragment"):
        build_directory(str(tmp_path / "v.blockfs"), spec, [1])
    with pytest.raises(MissingFileError, match="v.blockfs.0.fragment"):
        build_directory(str(tmp_path / "v.blockfs"), spec, [0, 1])
    assert build(task).status != LuigiStatusCode.SUCCESS
    assert not (tmp_path / "v.blockfs").exists()


def test_changed_plan_reruns_batches(tmp_path: Path, small_blocks):
    data = volume_array()
    np.save(tmp_path / "src.npy", data)
    dest = tmp_path / "v.blockfs"
    assert build(BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(dest))).status == LuigiStatusCode.SUCCESS
    dest.unlink()
    luigi.configuration.get_config().set("ingest", "target_tasks", "2")
    luigi.task_register.Register.clear_instance_cache()  # tasks cache their plan per instance
    task = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(dest))
    assert not all(t.complete() for t in task.requires())  # batch 0 now covers more units
    assert build(task).status == LuigiStatusCode.SUCCESS
    np.testing.assert_array_equal(Directory.open(dest)[:], data)


def test_batch_task_identity_is_the_plan(tmp_path: Path, small_blocks):
    np.save(tmp_path / "src.npy", volume_array())
    batches = BuildDirectory(source=str(tmp_path / "src.npy"), dest=str(tmp_path / "v.blockfs")).requires()
    assert all(isinstance(t, WriteBlockBatch) for t in batches)
    assert len({t.task_id for t in batches}) == len(batches)


def test_bad_tiff_plane_fails_once_while_planning(tmp_path: Path, small_blocks):
    import subprocess

    import tifffile

    from .conftest import luigi_command

    data = volume_array((40, 33, 40))
    for z, plane in enumerate(data):
        tifffile.imwrite(tmp_path / f"img_{z:02d}.tif", plane)
    raw = (tmp_path / "img_37.tif").read_bytes()
    (tmp_path / "img_37.tif").write_bytes(raw[:-100])  # a plane cut short by a failed copy
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    done = subprocess.run(
        luigi_command("BuildDirectory", "--source", str(tmp_path / "img_*.tif"), "--dest", str(tmp_path / "v.blockfs"),
                      "--local-scheduler", "--workers", "2", "--blockfs-block-size", "16"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert done.stderr.count("img_37.tif: plane z=37 is truncated") == 1, done.stderr
    assert not list(tmp_path.glob("v.blockfs*"))  # no batch ran


def test_batches_share_the_planners_source_and_see_planes_changed_since(tmp_path: Path, small_blocks, caplog):
    import tifffile

    data = volume_array((40, 33, 40))
    for z, plane in enumerate(data):
        tifffile.imwrite(tmp_path / f"img_{z:02d}.tif", plane)
    task = BuildDirectory(source=str(tmp_path / "img_*.tif"), dest=str(tmp_path / "v.blockfs"))
    batches = task.requires()  # plans: lists the stack and reads every plane's header once
    assert len(batches) > 1 and all(b._source is task._source for b in batches)
    tifffile.imwrite(tmp_path / "img_21.tif", data[21, :-1])  # changed after planning
    assert build(task).status != LuigiStatusCode.SUCCESS
    assert "img_21.tif: plane z=21 has shape (y, x) = (32, 40); expected (33, 40)" in caplog.text
    assert not (tmp_path / "v.blockfs").exists()
    tifffile.imwrite(tmp_path / "img_21.tif", data[21])  # repaired: the rerun writes the rest
    assert build(task).status == LuigiStatusCode.SUCCESS
    np.testing.assert_array_equal(Directory.open(tmp_path / "v.blockfs")[:], data)


def test_run_left_half_done_under_the_old_min_tasks_default_finishes(tmp_path: Path, small_blocks):
    """[ingest] min_tasks went from 32 to 8: a run stopped half way under 32 finishes under 8 (other batches)."""
    data = volume_array((32, 256, 40))  # 16-voxel blocks: 2 z rows of 16 block rows
    np.save(tmp_path / "src.npy", data)
    source, dest = str(tmp_path / "src.npy"), tmp_path / "v.blockfs"
    small_blocks("ingest", "target_tasks", 1000)
    with luigi_settings({("ingest", "min_tasks"): 32}):
        old = BuildDirectory(source=source, dest=str(dest)).requires()
        assert len(old) == 32
        assert luigi.build(old[:20], local_scheduler=True, workers=1, log_level="WARNING")  # then it was stopped
    luigi.task_register.Register.clear_instance_cache()  # a new process plans again, with the shipped default
    task = BuildDirectory(source=source, dest=str(dest))
    assert len(task.requires()) == 8
    assert not any(t.complete() for t in task.requires())  # fragments of the old plan are not taken for these
    assert build(task).status == LuigiStatusCode.SUCCESS
    np.testing.assert_array_equal(Directory.open(dest)[:], data)
    # the old plan's batches 8..19 are named by no directory: removed once the new one is published
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v.blockfs."))
    assert left == sorted([f"v.blockfs.{k}" for k in range(8)] + [f"v.blockfs.{k}.fragment" for k in range(8)])


def test_tiff_stack_killed_with_forked_workers_resumes_to_identical_bytes(tmp_path: Path):
    """Two forked workers sharing the planner's source: kill -9 after some batches, rerun, same files."""
    import glob
    import subprocess

    import tifffile

    from .conftest import kill_when, luigi_command, luigi_env, write_config

    data = volume_array((64, 96, 80))  # 16-voxel blocks: 4 z rows of 6 block rows -> 8 batches
    for z, plane in enumerate(data):
        tifffile.imwrite(tmp_path / f"img_{z}.tif", plane)
    cfg = luigi_env(write_config(tmp_path / "test.cfg", {"blockfs": {"block_size": 16}}))

    def args(dest: Path) -> list[str]:
        return luigi_command("BuildDirectory", "--source", str(tmp_path / "img_*.tif"), "--dest", str(dest),
                             "--local-scheduler", "--workers", "2")

    reference, dest = tmp_path / "ref" / "v.blockfs", tmp_path / "run" / "v.blockfs"
    subprocess.run(args(reference), env=cfg, capture_output=True, timeout=300, check=True)
    kill_when(args(dest), cfg, lambda: len(glob.glob(f"{dest}.*.fragment")) >= 3)
    assert not dest.exists()
    subprocess.run(args(dest), env=cfg, capture_output=True, timeout=300, check=True)
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(p.name for p in reference.parent.iterdir())
    for path in reference.parent.iterdir():
        assert (dest.parent / path.name).read_bytes() == path.read_bytes(), path.name
    np.testing.assert_array_equal(Directory.open(dest)[:], data)
