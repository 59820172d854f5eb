"""The batch planner covers every block once, within the task and memory bounds."""

import itertools

import pytest

from blockfs_tasks.core.errors import ConfigurationError
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.ingest.planning import blocks_of_unit, plan_batches


@pytest.mark.parametrize(
    "extent, block, target, budget",
    [
        ((100, 70, 50), (32, 32, 16), 1000, 1 << 30),  # one unit per batch
        ((100, 70, 50), (32, 32, 16), 2, 1 << 30),  # several z rows per batch
        ((1000, 300, 40), (64, 64, 8), 7, 64 * 64 * 8 * 1000 * 2 * 2),  # y bands of 2 rows
    ],
)
def test_every_block_in_exactly_one_batch(extent, block, target, budget):
    grid = BlockGrid(extent, block)
    plan = plan_batches(grid, 2, target, budget)
    assert plan.n_batches <= target
    seen = []
    for b in range(plan.n_batches):
        for unit in plan.units(b):
            assert (unit.z1 - unit.z0) * (unit.y1 - unit.y0) * extent[0] * 2 <= budget
            seen += [(x, y, z) for x, y, z, _ in blocks_of_unit(grid, unit)]
    assert sorted(seen) == sorted(grid.origins())


def test_slices_match_block_shapes():
    grid = BlockGrid((70, 50, 20), (32, 16, 8))
    plan = plan_batches(grid, 1, 3, 1 << 20)
    for b in range(plan.n_batches):
        for unit in plan.units(b):
            for x, y, z, (sz, sy, sx) in blocks_of_unit(grid, unit):
                shape = (sz.stop - sz.start, sy.stop - sy.start, sx.stop - sx.start)
                assert shape == grid.block_shape_at(x, y, z)


def test_task_count_stays_near_target_for_a_huge_volume():
    # ~20 million 64^3 blocks (~10 TB uint16): still at most 1000 tasks.
    grid = BlockGrid((40960, 40960, 12288), (64, 64, 64))
    plan = plan_batches(grid, 2, 1000, 4 << 30)
    assert grid.n_blocks > 19_000_000
    assert 500 <= plan.n_batches <= 1000


def test_budget_too_small_for_one_row_is_an_error():
    with pytest.raises(ConfigurationError, match="memory budget"):
        plan_batches(BlockGrid((4096, 64, 64), (64, 64, 64)), 2, 10, 1024)


def test_batch_out_of_range():
    plan = plan_batches(BlockGrid((64, 64, 64), (64, 64, 64)), 2, 10)
    with pytest.raises(ConfigurationError):
        plan.units(1)
    assert list(itertools.chain(plan.units(0)))


def test_min_tasks_narrows_bands_for_small_volumes():
    grid = BlockGrid((1024, 1024, 512), (64, 64, 64))  # 8 z rows of 16 x 16 blocks
    assert plan_batches(grid, 2, 1000, 1 << 30).n_batches == 8
    plan = plan_batches(grid, 2, 1000, 1 << 30, min_tasks=32)
    assert plan.n_batches == 32 and plan.band_rows == 4
    assert plan_batches(grid, 2, 10, 1 << 30, min_tasks=32).n_batches <= 10  # the upper bound wins
    tiny = BlockGrid((64, 64, 64), (64, 64, 64))
    assert plan_batches(tiny, 2, 1000, 1 << 30, min_tasks=32).n_batches == 1
