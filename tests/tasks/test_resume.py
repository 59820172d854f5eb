"""Kill -9 a real `luigi` run at several points, run it again: same volume, nothing redone twice."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory

from .conftest import kill_when as kill_run_when
from .conftest import luigi_command, luigi_env, write_config

SOURCE = "synthetic:256x384x384"  # 8 z rows of 32^3 blocks: 8 batches of ~0.2 s


def run_args(dest: Path) -> list[str]:
    return luigi_command(
        "BuildDirectory", "--source", SOURCE, "--dest", str(dest), "--local-scheduler", "--workers", "1"
    )


def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "test.cfg",
        {"blockfs": {"block_size": 32}, "ingest": {"target_tasks": 8, "memory_budget_mb": 64}},
    )


def run_to_completion(dest: Path, cfg: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(run_args(dest), env=luigi_env(cfg), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def fragments(dest: Path) -> list[str]:
    return sorted(glob.glob(f"{dest}.*.fragment"))


def kill_when(dest: Path, cfg: Path, condition, timeout: float = 120) -> None:
    """Start a run and SIGKILL its whole process group as soon as ``condition()`` holds."""
    kill_run_when(run_args(dest), luigi_env(cfg), condition, timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    dest = folder / "v.blockfs"
    run_to_completion(dest, config(folder))
    return dest


def in_a_batch(dest: Path):
    return lambda: len(fragments(dest)) >= 2 and any(os.path.getsize(p) > 0 for p in glob.glob(f"{dest}.*.tmp-*"))


def between_batches(dest: Path):
    return lambda: len(fragments(dest)) >= 4


def before_or_during_build(dest: Path):
    return lambda: len(fragments(dest)) == 8


@pytest.mark.parametrize("kill_point", [in_a_batch, between_batches, before_or_during_build])
def test_kill_and_resume_gives_identical_volume(tmp_path: Path, reference: Path, kill_point):
    dest = tmp_path / "v.blockfs"
    cfg = config(tmp_path)
    kill_when(dest, cfg, kill_point(dest))
    finished_before = {p: os.stat(p).st_mtime_ns for p in fragments(dest)}
    assert len(finished_before) < 8 or not dest.exists() or kill_point is before_or_during_build

    run_to_completion(dest, cfg)

    for path, mtime in finished_before.items():  # finished batches were not redone
        assert os.stat(path).st_mtime_ns == mtime, path
    assert not glob.glob(f"{dest}*.tmp-*"), "stale temporary files were not swept"
    assert dest.read_bytes() == reference.read_bytes()
    for k in range(8):
        assert Path(f"{dest}.{k}").read_bytes() == Path(f"{reference}.{k}").read_bytes()
    np.testing.assert_array_equal(Directory.open(dest)[:], Directory.open(reference)[:])


def test_second_run_of_finished_pipeline_does_nothing(tmp_path: Path, reference: Path):
    cfg = config(tmp_path)
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{reference}*")}
    done = run_to_completion(reference, cfg)
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{reference}*")} == before
    assert "already" in done.stdout + done.stderr or "complete" in done.stdout + done.stderr


@pytest.mark.slow
def test_random_kills_then_resume(tmp_path: Path, reference: Path):
    rng = np.random.default_rng(3)
    dest = tmp_path / "v.blockfs"
    cfg = config(tmp_path)
    for _ in range(6):  # kill on progress: once k more batches have published their fragments
        k = len(fragments(dest)) + int(rng.integers(1, 3))
        kill_when(dest, cfg, lambda k=k: len(fragments(dest)) >= k)
    run_to_completion(dest, cfg)
    assert dest.read_bytes() == reference.read_bytes()
