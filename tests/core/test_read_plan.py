"""Planned region reads: frames grouped into runs in file-offset order, and the reads they give."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import ChecksumError, TruncatedFileError
from blockfs_tasks.core.read_plan import Frame, plan_runs

from .helpers import same


def test_runs_follow_file_and_offset_and_stop_at_gaps_and_the_size_cap() -> None:
    frames = [
        Frame((0, 0, 0), 1, 100, 50), Frame((1, 0, 0), 0, 0, 10), Frame((2, 0, 0), 0, 10, 10),
        Frame((3, 0, 0), 1, 0, 100), Frame((4, 0, 0), 0, 25, 5), Frame((5, 0, 0), 1, 150, 40),
    ]
    runs = plan_runs(frames, max_run=160)
    assert [(r.file, r.start, r.stop, [f.origin[0] for f in r.frames]) for r in runs] == [
        (0, 0, 20, [1, 2]),  # adjacent frames of file 0
        (0, 25, 30, [4]),  # a gap starts a new run
        (1, 0, 150, [3, 0]),  # file 1 in offset order, not the order given
        (1, 150, 190, [5]),  # 0..190 would exceed max_run
    ]
    assert plan_runs([]) == []
    assert [len(r.frames) for r in plan_runs([Frame((0, 0, 0), 0, 0, 500)], max_run=100)] == [1]


def _interleaved(tmp_path: Path) -> tuple[Directory, np.ndarray]:
    """A volume whose blocks alternate between two block files out of grid order (as a pool writes)."""
    rng = np.random.default_rng(5)
    data = np.cumsum(rng.integers(0, 3, (48, 64, 80)), axis=2).astype(np.uint16)
    d = Directory(80, 64, 48, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    origins = list(d.grid.origins())
    rng.shuffle(origins)
    for i, (x, y, z) in enumerate(origins):
        if i % 2:
            d.write_block(data[z : z + 16, y : y + 16, x : x + 16], x, y, z)
    d.write_blocks(((data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in origins[::2]), n_threads=2)
    d.close()
    return Directory.open(tmp_path / "v.blockfs"), data


def test_planned_reads_equal_the_data(tmp_path: Path) -> None:
    r, data = _interleaved(tmp_path)
    assert same(r[:, :, :], data)
    assert same(r[3:47, 5:60:3, 7:79], data[3:47, 5:60:3, 7:79])
    assert same(r[10, :, :], data[10])


def test_planned_reads_name_a_corrupt_or_truncated_block(tmp_path: Path) -> None:
    r, _ = _interleaved(tmp_path)
    entry = r.index[7]
    path = r.block_filenames[int(entry["file"]) - 1]
    with open(path, "r+b") as f:
        f.seek(int(entry["offset"]) + 20)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match=f"{path}.*checksum mismatch"):
        Directory.open(tmp_path / "v.blockfs")[:, :, :]
    with open(path, "r+b") as f:  # mended, so the truncation below is the only fault
        f.seek(int(entry["offset"]) + 20)
        f.write(byte)
    os.truncate(path, int(r.index[r.index["file"] == entry["file"]]["offset"].max()))
    with pytest.raises(TruncatedFileError, match=f"{path}: block file is truncated"):
        Directory.open(tmp_path / "v.blockfs")[:, :, :]
