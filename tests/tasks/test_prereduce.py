"""Level 1 pre-reduced by the ingest batches: the same pyramid bytes, and level 0 decoded when a slab fails.

``Downsample`` without ``--volume`` has its ``BuildDirectory`` batches leave level-1
slabs (``pyramid/prereduce.py``); ``Downsample --volume`` of the same volume later
finds none and decodes level 0. Both must write byte-identical levels.
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np
import pytest
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory
from blockfs_tasks.core.format import VolumeSpec
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.core.naming import block_file_number
from blockfs_tasks.pyramid import Pyramid, build_pyramid
from blockfs_tasks.pyramid.prereduce import Level1Slabs, Prereduce, SlabWriter, slab_files, slab_name
from blockfs_tasks.tasks import BuildDirectory, Downsample

from .conftest import kill_when, luigi_command, luigi_env, luigi_settings, write_config

SETTINGS = {
    ("blockfs", "block_size"): "16",
    ("ingest", "min_tasks"): "6",
    ("pyramid", "blocks_per_batch"): "8",
    ("Downsample", "region_mb"): "1",
}


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    """16-voxel blocks, several ingest batches and pyramid tasks; the in-process luigi config restored after."""
    with luigi_settings(SETTINGS):
        yield tmp_path


def build(task: luigi.Task) -> None:
    luigi.task_register.Register.clear_instance_cache()
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text


def levels(out: Path) -> dict[str, bytes]:
    """Every level above 0: directory and block files (fragments are checkpoints, not the result)."""
    return {
        os.path.relpath(p, out): Path(p).read_bytes()
        for p in sorted(glob.glob(f"{out}/*/precomputed.blockfs*"))
        if not p.endswith(".fragment") and ".tmp-" not in p and not p.startswith(f"{out}/1_1_1/")
    }


def source(path: Path, mode: str, shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(11)
    if mode == "mode":  # blob-like labels with ties: a few labels per window
        data = rng.integers(0, 4, shape).astype(np.uint32) * 1_000_003
    else:
        data = rng.integers(0, 60000, shape).astype(np.uint16)
    np.save(path, data)
    return data


@pytest.mark.parametrize(("mode", "shape"), [("mean", (37, 45, 77)), ("mode", (34, 40, 33))])
def test_pyramid_from_slabs_is_byte_identical(small: Path, caplog: pytest.LogCaptureFixture, mode: str, shape):
    """Odd extents, partial edge blocks: the slabs' pyramid equals the one decoded from level 0."""
    source(small / "src.npy", mode, shape)
    config = luigi.configuration.get_config()
    config.set("pyramid", "mode", mode)
    config.set("BuildDirectory", "source", str(small / "src.npy"))
    config.set("BuildDirectory", "dest", str(small / "vol.blockfs"))
    caplog.set_level(logging.INFO, logger="blockfs_tasks.pyramid.prereduce")
    try:
        build(Downsample(out=str(small / "with")))
        assert "level 1 read from" in caplog.text
        assert slab_files(str(small / "vol.blockfs")) == []  # removed once the pyramid is complete
        caplog.clear()
        build(Downsample(volume=str(small / "vol.blockfs"), out=str(small / "without")))
        assert "level 1 decoded from level 0" in caplog.text
    finally:
        for option in ("source", "dest"):
            config.remove_option("BuildDirectory", option)
        config.remove_option("pyramid", "mode")
    with_slabs, without = levels(small / "with"), levels(small / "without")
    assert len(with_slabs) >= 6 and with_slabs == without


def ingest_with_slabs(folder: Path) -> tuple[str, np.ndarray]:
    data = source(folder / "src.npy", "mean", (40, 48, 50))
    dest = str(folder / "vol.blockfs")
    build(BuildDirectory(source=str(folder / "src.npy"), dest=dest, level1={"mode": "mean"}))
    assert len(slab_files(dest)) == len(Directory.open(dest).block_filenames) > 1
    return dest, data


def test_bad_slabs_fall_back_to_decoding_level0(small: Path, caplog: pytest.LogCaptureFixture):
    dest, _ = ingest_with_slabs(small)
    plain = build_pyramid(dest, str(small / "plain"))  # level by level, from decoded level 0
    prereduce = Prereduce("mean", (2, 2, 2))
    assert Level1Slabs.open(Directory.open(dest), prereduce) is not None
    assert Level1Slabs.open(Directory.open(dest), Prereduce("mode", (2, 2, 2))) is None  # made for another mode

    first = slab_files(dest)[0]
    raw = bytearray(Path(first).read_bytes())
    raw[100] ^= 0xFF  # a voxel of the first chunk
    Path(first).write_bytes(bytes(raw))
    os.utime(first, ns=(os.stat(dest).st_mtime_ns,) * 2)  # no newer than the directory: only the CRC tells
    caplog.set_level(logging.INFO, logger="blockfs_tasks.pyramid.prereduce")
    build(Downsample(volume=dest, out=str(small / "pyr")))
    assert "fails its CRC-32C" in caplog.text
    pyr = Pyramid.from_info(str(small / "pyr"))
    for i in range(1, len(plain.levels)):
        np.testing.assert_array_equal(pyr.open(i)[:], plain.open(i)[:])
    assert slab_files(dest) == []


@pytest.mark.parametrize("damage", ["missing", "truncated", "newer", "rewritten block"])
def test_slabs_that_may_be_stale_are_not_used(small: Path, damage: str):
    dest, data = ingest_with_slabs(small)
    slab = slab_files(dest)[1]
    if damage == "missing":
        os.unlink(slab)
    elif damage == "truncated":
        os.truncate(slab, os.path.getsize(slab) - 5)
        os.utime(slab, ns=(os.stat(dest).st_mtime_ns,) * 2)  # only the footer tells
    elif damage == "newer":  # e.g. a killed re-ingest of changed data rewrote it after this directory
        os.utime(slab, ns=(os.stat(dest).st_mtime_ns + 10**9,) * 2)
    else:  # the live API rewrote a block after ingest: its entry points into a new block file
        d = Directory.open(dest, "r+")
        d.write_block(np.zeros((16, 16, 16), np.uint16), 0, 16, 16)
        d.close()
        d = Directory.open(dest)
        numbers = [block_file_number(dest, p) for p in d.block_filenames]
        new = max(n for n in numbers if n is not None)
        assert not os.path.exists(slab_name(dest, new))
        SlabWriter(dest, new, d.spec, Prereduce("mean", (2, 2, 2))).commit()  # an empty slab: only the index tells
        os.utime(slab_name(dest, new), ns=(os.stat(dest).st_mtime_ns,) * 2)
    assert Level1Slabs.open(Directory.open(dest), Prereduce("mean", (2, 2, 2))) is None


def test_kill_during_ingest_with_slabs_then_rerun_gives_identical_files(tmp_path: Path):
    """SIGKILL a real ``luigi --workers 2`` once some batches left slabs; the rerun's pyramid is the same bytes."""
    source(tmp_path / "src.npy", "mean", (64, 96, 100))
    cfg = write_config(tmp_path / "test.cfg", {
        "blockfs": {"block_size": 16}, "ingest": {"min_tasks": 24},
        "pyramid": {"blocks_per_batch": 16}, "Downsample": {"region_mb": 1},
    })

    def args(name: str) -> list[str]:
        return luigi_command(
            "Downsample", "--out", str(tmp_path / name / "pyr"), "--local-scheduler", "--workers", "2",
            "--BuildDirectory-source", str(tmp_path / "src.npy"),
            "--BuildDirectory-dest", str(tmp_path / name / "vol.blockfs"),
        )

    def run(name: str) -> None:
        done = subprocess.run(args(name), env=luigi_env(cfg), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    run("reference")
    dest = tmp_path / "killed" / "vol.blockfs"

    def some_slabs() -> bool:
        return len(glob.glob(f"{dest}.*.level1")) >= 3 and not dest.exists()

    kill_when(args("killed"), luigi_env(cfg), some_slabs)
    assert not dest.exists() and not (tmp_path / "killed" / "pyr" / "info").exists()
    run("killed")
    reference, killed = levels(tmp_path / "reference" / "pyr"), levels(tmp_path / "killed" / "pyr")
    assert len(reference) > 4 and killed == reference
    assert glob.glob(f"{dest}.*.level1") == []
    np.testing.assert_array_equal(Directory.open(dest)[:], np.load(tmp_path / "src.npy"))


def test_a_piece_off_the_steps_gives_no_slab_and_no_error(tmp_path: Path):
    """Ingest never fails for its cache: a piece a window would straddle abandons the slab."""
    data = np.arange(6 * 4 * 4, dtype=np.uint16).reshape(6, 4, 4)
    spec = VolumeSpec(BlockGrid((4, 4, 6), (4, 4, 2)), np.dtype(np.uint16))
    writer = SlabWriter(str(tmp_path / "v.blockfs"), 0, spec, Prereduce("mean", (2, 2, 2)))
    writer.add(0, 2, 0, 4, data[0:2])
    writer.add(3, 6, 0, 4, data[3:6])  # starts on an odd plane
    writer.commit()
    assert slab_files(str(tmp_path / "v.blockfs")) == [] and os.listdir(tmp_path) == []
