"""Small volumes for the versions tests: 2 x 2 x 2 blocks of 16 voxels (uint16).

A block of "value" v is noise seeded by v (8 KiB frames: bigger than a
filesystem block, so compaction can punch them) with v at voxel (0, 0, 0).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from blockfs_tasks.core import Directory

B = 16  # block size, every axis
N = 2  # blocks per axis
ORIGINS = [(x, y, z) for z in range(0, N * B, B) for y in range(0, N * B, B) for x in range(0, N * B, B)]


def block(value: int) -> np.ndarray:
    """The (z, y, x) block of ``value``: incompressible noise seeded by it, ``value`` at (0, 0, 0)."""
    out = np.random.default_rng(value).integers(0, 65535, (B, B, B), np.uint16)
    out[0, 0, 0] = value
    return out


def write(path: str, values: dict[tuple[int, int, int], int]) -> None:
    """One writing session of the volume at ``path`` writing ``values`` (origin -> fill value)."""
    d = Directory.open(path, "r+")
    for origin, value in values.items():
        d.write_block(block(value), *origin)
    d.close()


def values_of(path: str) -> dict[tuple[int, int, int], int]:
    """origin -> fill value of every present block (the model's view of a volume or version)."""
    d = Directory.open(path)
    out = {}
    for o in ORIGINS:
        if d.has_block(*o):
            got = d.read_block(*o)
            value = int(got[0, 0, 0])
            assert np.array_equal(got, block(value)), f"{path}: block at {o} is not the block of {value}"
            out[o] = value
    return out


@pytest.fixture
def volume(tmp_path) -> str:
    path = str(tmp_path / "vol.blockfs")
    d = Directory(N * B, N * B, N * B, np.uint16, path, x_block_size=B, y_block_size=B, z_block_size=B)
    d.create()
    d.close()
    return path


@pytest.fixture
def writer() -> Callable[[str, dict[tuple[int, int, int], int]], None]:
    return write
