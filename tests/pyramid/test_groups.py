"""Several levels from one read: same result as level by level, groups sized by memory and workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import ConfigurationError
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.pyramid import (
    LevelGroup,
    build_pyramid,
    downsample_group_batch,
    group_batches,
    group_of,
    level_spec,
    plan_groups,
    plan_pyramid,
)

from .test_pyramid import write_volume


@pytest.mark.parametrize("mode", ["mean", "mode"])
def test_one_read_gives_every_level_as_level_by_level(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(7)
    if mode == "mean":
        data = rng.integers(0, 60000, (37, 53, 70), dtype=np.uint16)
    else:
        data = np.array([0, 5, 2**33, 9], np.uint64)[rng.integers(0, 4, (37, 53, 70))]
    absent = {(x, y, z) for x in (0, 8) for y in (0, 8) for z in (0, 8)}  # every source of a level-1 block
    absent |= {(64, 48, 32)}  # an edge block, one source among several
    src = write_volume(tmp_path / "l0.blockfs", data, (8, 8, 8), absent)
    reference = build_pyramid(src.directory_filename, str(tmp_path / "ref"), (1, 1, 2.5), mode, max_levels=4)
    plan = plan_pyramid(src.directory_filename, tmp_path / "grp", (1, 1, 2.5), mode, max_levels=4)
    specs = [level_spec(src.spec, level, mode) for level in plan.levels[1:]]
    assert [s.metadata["pyramid"]["step_xyz"] for s in specs] == [[2, 2, 1], [2, 2, 2], [2, 2, 2]]
    outs = []
    for i, spec in enumerate(specs, start=1):
        x, y, z = spec.grid.extent_xyz
        out = Directory(x, y, z, spec.dtype, str(tmp_path / f"g{i}.blockfs"), *spec.grid.block_xyz)
        out.create()
        outs.append(out)
    top = specs[-1].grid
    origins = list(top.origins())
    done: list[int] = []
    written = downsample_group_batch(src, specs, outs, origins[::-1], mode, done.append)  # any order
    assert len(done) == len(origins)
    for out in outs:
        out.close()
    for i in range(1, 4):
        got, want = Directory.open(str(tmp_path / f"g{i}.blockfs")), reference.open(i)
        np.testing.assert_array_equal(got[:], want[:])
        present = [o for o in want.grid.origins() if want.has_block(*o)]
        assert [o for o in got.grid.origins() if got.has_block(*o)] == present
        assert written[i - 1] == len(present)
        assert i > 1 or len(present) < want.grid.n_blocks  # level 1's block with no sources stayed absent


def test_group_batch_checks_its_inputs(tmp_path: Path) -> None:
    src = write_volume(tmp_path / "l0.blockfs", np.zeros((32, 32, 32), np.uint8), (8, 8, 8))
    plan = plan_pyramid(src.directory_filename, tmp_path / "p", max_levels=3)
    specs = [level_spec(src.spec, level) for level in plan.levels[1:]]
    with pytest.raises(ConfigurationError, match="writers"):
        downsample_group_batch(src, specs, [], [(0, 0, 0)])
    with pytest.raises(ConfigurationError, match="median"):
        downsample_group_batch(src, specs, [], [], "median")
    with pytest.raises(ConfigurationError, match="extent"):
        downsample_group_batch(src, specs[1:], [src], [])  # level 2 from level 0


def test_groups_fit_the_region_budget_and_keep_workers_busy(tmp_path: Path) -> None:
    d = Directory(1024, 1024, 512, np.uint16, str(tmp_path / "v.blockfs"), 64, 64, 64)
    d.create()
    d.close()
    plan = plan_pyramid(d.directory_filename, tmp_path / "p")
    assert [lv.key for lv in plan.levels] == ["1_1_1", "2_2_2", "4_4_4", "8_8_8", "16_16_16"]
    groups = plan_groups(plan, 64 << 20, min_batches=8)
    # 256^3 uint16 (32 MiB) under a level-2 block fits; 512^3 does not; level 3 has only 4 blocks
    assert groups == [LevelGroup(0, 2), LevelGroup(2, 4)]  # level 2 (16 MiB) is read whole for levels 3-4
    assert group_of(groups, 2) == groups[0] and list(groups[0].levels) == [1, 2]
    batches = group_batches(plan, groups[0], 256, 8)
    level2 = BlockGrid(plan.levels[2].extent_xyz, plan.block_xyz)
    assert len(batches) == 8 and sorted(o for b in batches for o in b) == sorted(level2.origins())
    assert len(group_batches(plan, groups[1], 256, 8)) == 1  # level 4 is one block
    assert plan_groups(plan, 32 << 20, min_batches=8)[1:] == [LevelGroup(2, 3), LevelGroup(3, 4)]
    assert len(group_batches(plan, LevelGroup(2, 3), 256, 8)) == 4  # as many as level 3 has blocks
    assert plan_groups(plan, 1 << 30, min_batches=1) == [LevelGroup(0, 4)]  # one read for all levels
    assert plan_groups(plan, 1 << 20, min_batches=1)[0] == LevelGroup(0, 1)  # 1 MiB: one level at a time
    with pytest.raises(ConfigurationError):
        group_of(groups, 5)

