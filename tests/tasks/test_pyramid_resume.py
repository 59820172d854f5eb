"""Kill -9 a real `luigi` Downsample while a batch writes several levels, run it again: identical bytes."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.pyramid import Pyramid

from .conftest import kill_when, luigi_command, luigi_env, write_config


def make_level0(path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 5000, (96, 192, 200), dtype=np.uint16)
    d = Directory(200, 192, 96, np.uint16, str(path), 16, 16, 16)
    d.create()
    d.write_blocks((data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in d.grid.origins())
    d.close()


def run_args(level0: Path, out: Path) -> list[str]:
    args = ("--volume", str(level0), "--out", str(out), "--local-scheduler", "--workers", "2")
    return luigi_command("Downsample", *args)


def config(tmp_path: Path) -> Path:
    sections = {"pyramid": {"blocks_per_batch": 16}, "Downsample": {"min_tasks": 8, "region_mb": 1}}
    return write_config(tmp_path / "test.cfg", sections)  # 10 batches for levels 1-2, one for 3-4


def run_to_completion(level0: Path, out: Path, cfg: Path) -> None:
    done = subprocess.run(run_args(level0, out), env=luigi_env(cfg), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def files(out: Path) -> dict[str, bytes]:
    """Every downsampled level's directory and block files (fragments are checkpoints, not the result).

    Level 0 is the input, hard-linked: written separately for each test, so its header differs.
    """
    return {
        os.path.relpath(p, out): Path(p).read_bytes()
        for p in sorted(glob.glob(f"{out}/*/precomputed.blockfs*"))
        if not p.endswith(".fragment") and ".tmp-" not in p and not p.startswith(f"{out}/1_1_1/")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("reference")
    make_level0(folder / "l0.blockfs")
    run_to_completion(folder / "l0.blockfs", folder / "pyr", config(folder))
    return folder / "l0.blockfs", folder / "pyr"


def inside_a_batch(out: Path):
    """A batch is writing its levels' block files while another has published its fragments."""
    def size(path: str) -> int:
        try:
            return os.path.getsize(path)
        except FileNotFoundError:  # published (renamed) since the listing
            return 0

    def check() -> bool:
        writing = any(size(p) > 0 for p in glob.glob(f"{out}/2_2_2/*.tmp-*"))
        return writing and len(glob.glob(f"{out}/4_4_4/*.fragment")) >= 1
    return check


def some_batches(out: Path):
    return lambda: len(glob.glob(f"{out}/4_4_4/*.fragment")) >= 3


@pytest.mark.parametrize("kill_point", [inside_a_batch, pytest.param(some_batches, marks=pytest.mark.slow)])
def test_kill_during_downsample_then_resume_gives_identical_bytes(tmp_path: Path, reference, kill_point) -> None:
    ref_level0, ref_out = reference
    level0, out = tmp_path / "l0.blockfs", tmp_path / "pyr"
    make_level0(level0)
    cfg = config(tmp_path)
    kill_when(run_args(level0, out), luigi_env(cfg), kill_point(out))
    assert not (out / "info").exists(), "the run finished before the kill point"
    run_to_completion(level0, out, cfg)
    got, want = files(out), files(ref_out)
    assert sorted(got) == sorted(want) and len(want) > 6
    for name in want:
        assert got[name] == want[name], name
    assert (out / "info").read_text() == (ref_out / "info").read_text().replace(str(ref_out), str(out))
    pyr = Pyramid.from_info(str(out))
    assert len(pyr.levels) == 5
    assert not glob.glob(f"{out}/**/*.tmp-*", recursive=True)
