"""A user's own Luigi tasks write blocks straight into blockfs (the documented extension point)."""

from __future__ import annotations

from pathlib import Path

import luigi
import numpy as np
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import BlockGrid, Directory, VolumeSpec
from blockfs_tasks.tasks import BlockBatchTask, BuildVolume

SPEC = VolumeSpec(BlockGrid((50, 40, 30), (16, 16, 16)), np.dtype("uint32"))


def expected_block(x: int, y: int, z: int) -> np.ndarray:
    sz, sy, sx = SPEC.grid.block_shape_at(x, y, z)
    zz, yy, xx = np.mgrid[z : z + sz, y : y + sy, x : x + sx]
    return (xx + 100 * yy + 10000 * zz).astype(np.uint32)


class ComputeSlab(BlockBatchTask):
    """Computes the blocks of one z row (a stand-in for a processing step)."""

    def volume_spec(self) -> VolumeSpec:
        return SPEC

    def blocks(self):
        z = self.batch * 16
        for x, y, bz in SPEC.grid.origins_in_region(z, z + 1, 0, 40, 0, 50):
            yield expected_block(x, y, bz), x, y, bz


class BuildComputed(BuildVolume):
    def volume_spec(self) -> VolumeSpec:
        return SPEC

    def requires(self):
        return [ComputeSlab(dest=self.dest, batch=b) for b in range(SPEC.grid.grid_shape[0])]


def test_user_tasks_write_a_volume(tmp_path: Path):
    dest = tmp_path / "computed.blockfs"
    result = luigi.build(
        [BuildComputed(dest=str(dest))], local_scheduler=True, detailed_summary=True, log_level="WARNING"
    )
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    d = Directory.open(dest)
    zz, yy, xx = np.mgrid[0:30, 0:40, 0:50]
    np.testing.assert_array_equal(d[:], (xx + 100 * yy + 10000 * zz).astype(np.uint32))
