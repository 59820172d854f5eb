"""Export tasks: read back equals the volume; an interrupted export redoes only what is missing."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import luigi
import numpy as np
import pytest
import tifffile
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory
from blockfs_tasks.tasks import ExportHdf5, ExportJp2k, ExportTiff


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(5).integers(0, 4000, (40, 37, 53)).astype(np.uint16)
    d = Directory(53, 37, 40, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.write_blocks(
        (data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in d.grid.origins()
    )
    d.close()
    luigi.task_register.Register.clear_instance_cache()
    return tmp_path / "v.blockfs", data


def build(task: luigi.Task):
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    return result


def test_export_tiff_and_resume(tmp_path: Path, volume):
    path, data = volume
    pattern = str(tmp_path / "tiff" / "img_%03d.tiff")
    build(ExportTiff(volume=str(path), output_pattern=pattern))
    planes = np.stack([tifffile.imread(pattern % z) for z in range(40)])
    np.testing.assert_array_equal(planes, data)

    kept = {z: os.stat(pattern % z).st_mtime_ns for z in range(40)}
    for z in (3, 17):  # as if a run had been killed before these were written
        os.unlink(pattern % z)
    luigi.task_register.Register.clear_instance_cache()
    build(ExportTiff(volume=str(path), output_pattern=pattern))
    for z in range(40):
        if z not in (3, 17):
            assert os.stat(pattern % z).st_mtime_ns == kept[z], f"plane {z} was redone"
    np.testing.assert_array_equal(np.stack([tifffile.imread(pattern % z) for z in range(40)]), data)


def test_export_jp2k_lossless(tmp_path: Path, volume):
    from blockfs_tasks.export.jp2k import load_glymur

    glymur = load_glymur()
    path, data = volume
    pattern = str(tmp_path / "jp2" / "img_%03d.jp2")
    build(ExportJp2k(volume=str(path), output_pattern=pattern))
    for z in (0, 21, 39):
        np.testing.assert_array_equal(glymur.Jp2k(pattern % z)[:], data[z])


def test_export_hdf5_through_mpiexec(tmp_path: Path, volume):
    path, data = volume
    dest = tmp_path / "out.h5"
    with h5py.File(dest, "w") as f:
        f["keep"] = np.arange(3)
    build(ExportHdf5(volume=str(path), dest=str(dest), name="/volume/data"))
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f["/volume/data"][:], data)
        assert f["/volume/data"].chunks == (16, 16, 16)
        np.testing.assert_array_equal(f["keep"][:], np.arange(3))
    before = os.stat(dest).st_mtime_ns
    luigi.task_register.Register.clear_instance_cache()
    build(ExportHdf5(volume=str(path), dest=str(dest), name="/volume/data"))
    assert os.stat(dest).st_mtime_ns == before  # every slab recorded complete: nothing redone


def test_export_hdf5_shuffle_into_a_new_folder(tmp_path: Path, volume):
    """ExportHdf5 has the CLI's --shuffle, and creates the destination's folder."""
    path, data = volume
    dest = tmp_path / "new" / "folder" / "out.h5"
    build(ExportHdf5(volume=str(path), dest=str(dest), name="data", shuffle=True))
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f["data"][:], data)
        assert f["data"].shuffle
