"""The block grid: positions (x fastest), origins, edge blocks, region overlaps, bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from blockfs_tasks.core import BlockGrid, ConfigurationError, OutOfBoundsError

GRID = BlockGrid((100, 70, 33), (32, 16, 8))  # extent, block: XYZ


def test_shapes_are_zyx() -> None:
    assert GRID.shape == (33, 70, 100)
    assert GRID.block_shape == (8, 16, 32)
    assert GRID.grid_shape == (5, 5, 4)
    assert GRID.n_blocks == 100


def test_positions_are_c_order_x_fastest_and_invert() -> None:
    origins = list(GRID.origins())
    assert len(origins) == GRID.n_blocks
    assert origins[:5] == [(0, 0, 0), (32, 0, 0), (64, 0, 0), (96, 0, 0), (0, 16, 0)]
    for i, (x, y, z) in enumerate(origins):
        assert GRID.position(x, y, z) == i
        assert GRID.origin(i) == (x, y, z)
    assert GRID.position(96, 64, 32) == GRID.n_blocks - 1


def test_edge_blocks_are_truncated() -> None:
    assert GRID.block_shape_at(0, 0, 0) == (8, 16, 32)
    assert GRID.block_shape_at(96, 64, 32) == (1, 6, 4)
    total = sum(np.prod(GRID.block_shape_at(*o)) for o in GRID.origins())
    assert total == 100 * 70 * 33


def test_origins_in_region_are_exactly_the_overlapping_blocks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        z0, z1 = sorted(rng.integers(0, 34, 2))
        y0, y1 = sorted(rng.integers(0, 71, 2))
        x0, x1 = sorted(rng.integers(0, 101, 2))
        got = set(GRID.origins_in_region(z0, z1, y0, y1, x0, x1))
        want = {
            (x, y, z)
            for x, y, z in GRID.origins()
            if x < x1 and x + 32 > x0 and y < y1 and y + 16 > y0 and z < z1 and z + 8 > z0
        }
        assert got == want


@pytest.mark.parametrize(
    "origin, axis, what",
    [
        ((100, 0, 0), "x", "outside"),
        ((0, -16, 0), "y", "outside"),
        ((0, 0, 40), "z", "outside"),
        ((1, 0, 0), "x", "off the block grid"),
        ((0, 17, 0), "y", "off the block grid"),
        ((0, 0, 4), "z", "off the block grid"),
    ],
)
def test_bad_origins_name_the_axis(origin: tuple[int, int, int], axis: str, what: str) -> None:
    with pytest.raises(OutOfBoundsError, match=f"{axis}={origin['xyz'.index(axis)]}.*{what}"):
        GRID.position(*origin)
    with pytest.raises(IndexError):
        GRID.check_origin(*origin)


def test_origin_outside_positions() -> None:
    with pytest.raises(OutOfBoundsError, match="100"):
        GRID.origin(100)
    with pytest.raises(OutOfBoundsError):
        GRID.origin(-1)


@pytest.mark.parametrize(
    "extent, block",
    [((0, 1, 1), (1, 1, 1)), ((1, 1, 1), (1, -2, 1)), ((1.5, 1, 1), (1, 1, 1)), ((1, 1), (1, 1, 1)),
     ((1, 1, 1), (True, 1, 1))],
)
def test_invalid_grid(extent: tuple, block: tuple) -> None:
    with pytest.raises(ConfigurationError, match="Expected"):
        BlockGrid(extent, block)


def test_single_voxel_and_single_block_volumes() -> None:
    one = BlockGrid((1, 1, 1), (64, 64, 64))
    assert one.n_blocks == 1 and one.block_shape_at(0, 0, 0) == (1, 1, 1)
    exact = BlockGrid((64, 128, 64), (64, 64, 64))
    assert list(exact.origins()) == [(0, 0, 0), (0, 64, 0)]
    assert all(exact.block_shape_at(*o) == (64, 64, 64) for o in exact.origins())
    assert set(itertools.islice(exact.origins_in_region(0, 1, 0, 128, 0, 1), 10)) == {(0, 0, 0), (0, 64, 0)}
