"""The Luigi pipeline writing to S3 (moto_server): the same objects as a local run's files, after a kill -9 too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

# tests/ is on sys.path (rootdir import mode)
from tasks.conftest import kill_when, luigi_command, luigi_env, write_config

from blockfs_tasks.core import Directory

from .servers import S3_ENV, MotoServer, s3_options

SOURCE = "synthetic:128x160x160"  # 4 z rows of 32^3 blocks: 4 batches


def run_args(dest: str) -> list[str]:
    return luigi_command("BuildDirectory", "--source", SOURCE, "--dest", dest, "--local-scheduler", "--workers", "1")


def env_for(tmp_path: Path, moto: MotoServer) -> dict[str, str]:
    cfg = write_config(
        tmp_path / "test.cfg", {"blockfs": {"block_size": 32}, "ingest": {"target_tasks": 4, "memory_budget_mb": 64}}
    )
    return {**luigi_env(cfg), **S3_ENV, "AWS_ENDPOINT_URL": moto.endpoint, "BLOCKFS_STAGING": str(tmp_path / "stage")}


def run(dest: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(run_args(dest), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "This progress looks :)" in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("v.blockfs")}


def bucket_objects(s3, prefix: str) -> dict[str, bytes]:
    s3.invalidate_cache()
    return {Path(k).name: s3.cat_file(k) for k in s3.find(prefix, refresh=True)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, moto: MotoServer) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("local")
    run(str(folder / "v.blockfs"), env_for(folder, moto))
    return local_files(folder)


def test_pipeline_to_s3_writes_the_local_runs_files(tmp_path: Path, s3, bucket: str, moto: MotoServer, local_run):
    url = f"s3://{bucket}/out/v.blockfs"
    env = env_for(tmp_path, moto)
    run(url, env)
    assert bucket_objects(s3, f"{bucket}/out") == local_run
    second = run(url, env)  # a finished pipeline does nothing
    summary = second.stdout + second.stderr
    assert "complete ones were encountered" in summary and "ran successfully" not in summary, summary
    assert not any(p.is_file() for p in (tmp_path / "stage").rglob("*"))  # staged files removed once uploaded
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    local = Directory.open(str(next(iter(tmp_path.parent.glob("local*"))) / "v.blockfs"))
    np.testing.assert_array_equal(d[:, :, :], local[:, :, :])


@pytest.mark.slow
def test_kill_9_mid_upload_then_rerun(tmp_path: Path, s3, bucket: str, moto: MotoServer, local_run) -> None:
    url = f"s3://{bucket}/out/v.blockfs"
    env = env_for(tmp_path, moto)
    def two_fragments_uploaded() -> bool:  # kill on progress: once two batches' fragments are objects
        return len([k for k in s3.find(f"{bucket}/out", refresh=True) if k.endswith(".fragment")]) >= 2

    kill_when(run_args(url), env, two_fragments_uploaded, timeout=240)
    killed = bucket_objects(s3, f"{bucket}/out")
    assert "v.blockfs" not in killed, "the directory object exists before every batch is uploaded"
    assert any(k.endswith(".fragment") for k in killed)
    for name, data in killed.items():  # whatever exists is whole: the local run's bytes
        assert data == local_run[name], name
    run(url, env)
    assert bucket_objects(s3, f"{bucket}/out") == local_run
    second = run(url, env)  # a finished pipeline does nothing
    summary = second.stdout + second.stderr
    assert "complete ones were encountered" in summary and "ran successfully" not in summary, summary
