"""Downsample through Luigi into S3 (moto_server): the objects are a local run's files, and read back exactly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tasks.conftest import kill_when, luigi_command, luigi_env, write_config  # tests/ on sys.path

from blockfs_tasks.core import Directory

from .conftest import make_volume
from .servers import S3_ENV, MotoServer, s3_options

# 100 x 90 x 70 voxels in 32^3 blocks: level 1 (8 blocks, 8 batches) is made from level 0,
# level 2 (one block) from level 1 read back from the bucket (two groups: level 0 is not small
# next to region_mb = 1).
ARGS = ("--region-mb", "1", "--min-tasks", "8", "--local-scheduler", "--workers", "1")


def run_args(volume: Path, out: str) -> list[str]:
    return luigi_command("Downsample", "--volume", str(volume), "--out", out, *ARGS)


def env_for(tmp_path: Path, moto: MotoServer) -> dict[str, str]:
    cfg = write_config(tmp_path / "test.cfg", {"pyramid": {"blocks_per_batch": 1}})
    return {**luigi_env(cfg), **S3_ENV, "AWS_ENDPOINT_URL": moto.endpoint, "BLOCKFS_STAGING": str(tmp_path / "stage")}


def run(volume: Path, out: str, env: dict[str, str]) -> str:
    done = subprocess.run(run_args(volume, out), env=env, capture_output=True, text=True, timeout=300)
    summary = done.stdout + done.stderr
    assert done.returncode == 0 and "This progress looks :)" in summary, summary
    return summary


def bucket_objects(s3, prefix: str) -> dict[str, bytes]:
    s3.invalidate_cache()
    return {k[len(prefix) + 1 :]: s3.cat_file(k) for k in s3.find(prefix, refresh=True)}


@pytest.fixture(scope="module")
def level0(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("level0")
    data = make_volume(folder / "v.blockfs")
    return folder / "v.blockfs", data


@pytest.fixture(scope="module")
def local_pyramid(tmp_path_factory, level0, moto: MotoServer) -> dict[str, bytes]:
    """The files of a local Downsample of ``level0`` (its folder: ``<tmp>/local-pyramid*/pyr``)."""
    folder = tmp_path_factory.mktemp("local-pyramid")
    run(level0[0], str(folder / "pyr"), env_for(folder, moto))
    files = {str(p.relative_to(folder / "pyr")): p.read_bytes() for p in (folder / "pyr").rglob("*") if p.is_file()}
    assert len(json.loads(files["info"])["scales"]) == 3
    assert {"2_2_2/precomputed.blockfs.7.fragment", "4_4_4/precomputed.blockfs", "1_1_1/precomputed.blockfs"} <= set(
        files
    )
    return files


def test_downsample_to_s3_writes_the_local_runs_files(
    tmp_path: Path, s3, bucket: str, moto: MotoServer, level0, local_pyramid
) -> None:
    url = f"s3://{bucket}/out/pyr"
    env = env_for(tmp_path, moto)
    run(level0[0], url, env)
    assert bucket_objects(s3, f"{bucket}/out/pyr") == local_pyramid
    assert not any(p.is_file() for p in (tmp_path / "stage").rglob("*"))  # staged batches removed once uploaded
    info = json.loads(s3.cat_file(f"{bucket}/out/pyr/info"))
    options = s3_options(moto.endpoint)
    levels = [Directory.open(f"{url}/{scale['blockfs']}", storage_options=options) for scale in info["scales"]]
    np.testing.assert_array_equal(levels[0][:, :, :], level0[1])
    local = next(tmp_path.parent.glob("local-pyramid*"))
    for scale, level in zip(info["scales"], levels, strict=True):
        np.testing.assert_array_equal(level[:, :, :], Directory.open(str(local / "pyr" / scale["blockfs"]))[:, :, :])
    summary = run(level0[0], url, env)  # a finished pyramid does nothing
    assert "complete ones were encountered" in summary and "ran successfully" not in summary, summary


def test_a_foreign_info_object_is_an_error(tmp_path: Path, s3, bucket: str, moto: MotoServer, level0) -> None:
    s3.pipe_file(f"{bucket}/out/pyr/info", b'{"@type": "something else"}')
    done = subprocess.run(run_args(level0[0], f"s3://{bucket}/out/pyr"), env=env_for(tmp_path, moto),
                          capture_output=True, text=True, timeout=300)
    summary = done.stdout + done.stderr
    assert done.returncode != 0 and "describes another pyramid than planned" in summary, summary
    assert sorted(bucket_objects(s3, f"{bucket}/out/pyr")) == ["info"]  # nothing written


@pytest.mark.slow
def test_kill_9_mid_downsample_then_rerun(
    tmp_path: Path, s3, bucket: str, moto: MotoServer, level0, local_pyramid
) -> None:
    url = f"s3://{bucket}/out/pyr"
    env = env_for(tmp_path, moto)

    def level1_fragments() -> int:  # kill on progress: once three of level 1's fragments are objects
        return len([k for k in s3.find(f"{bucket}/out/pyr/2_2_2", refresh=True) if k.endswith(".fragment")])

    kill_when(run_args(level0[0], url), env, lambda: level1_fragments() >= 3, timeout=240)
    killed = bucket_objects(s3, f"{bucket}/out/pyr")
    assert "info" not in killed and "2_2_2/precomputed.blockfs" not in killed, sorted(killed)
    for name, data in killed.items():  # whatever exists is whole: the local run's bytes
        assert data == local_pyramid[name], name
    run(level0[0], url, env)
    assert bucket_objects(s3, f"{bucket}/out/pyr") == local_pyramid
