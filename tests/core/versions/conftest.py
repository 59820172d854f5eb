"""Small volumes for the versions tests: 2 x 2 x 2 blocks of 8 voxels, each block filled with one value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from blockfs_tasks.core import Directory

B = 8  # block size, every axis
N = 2  # blocks per axis
ORIGINS = [(x, y, z) for z in range(0, N * B, B) for y in range(0, N * B, B) for x in range(0, N * B, B)]


def block(value: int) -> np.ndarray:
    """A (z, y, x) block that is ``value`` everywhere, with some structure so it compresses to its own frame."""
    out = np.full((B, B, B), value % 251, np.uint8)
    out[0, 0, : value % B] = 255
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
    return {o: int(d.read_block(*o)[B - 1, B - 1, B - 1]) for o in ORIGINS if d.has_block(*o)}


@pytest.fixture
def volume(tmp_path) -> str:
    path = str(tmp_path / "vol.blockfs")
    d = Directory(N * B, N * B, N * B, np.uint8, path, x_block_size=B, y_block_size=B, z_block_size=B)
    d.create()
    d.close()
    return path


@pytest.fixture
def writer() -> Callable[[str, dict[tuple[int, int, int], int]], None]:
    return write
