"""cloud-volume, a second real client: over HTTP from the server, and from static exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.serve.server import BackgroundServer
from blockfs_tasks.serve.static import write_static_precomputed

from .conftest import ABSENT_XYZ, Sample

cloudvolume = pytest.importorskip("cloudvolume", reason="cloud-volume is not installed (pip install cloud-volume)")


def _open(url: str, mip: int) -> object:
    return cloudvolume.CloudVolume(url, mip=mip, fill_missing=True, progress=False, cache=False, parallel=1)


def _regions(extent_xyz: tuple[int, int, int]) -> list[tuple[slice, slice, slice]]:
    ex, ey, ez = extent_xyz
    return [
        (slice(0, ex), slice(0, ey), slice(0, ez)),  # everything
        (slice(ex // 3, ex - 1), slice(1, max(2, ey // 2)), slice(ez // 4, ez)),  # not aligned
        (slice(ex - 3, ex), slice(ey - 2, ey), slice(ez - 1, ez)),  # far corner: edge chunks
    ]


def _check_all_mips(url: str, sample: Sample) -> None:
    for mip, level in enumerate(sample.pyramid.levels):
        vol = _open(url, mip)
        assert tuple(vol.shape[:3]) == level.extent_xyz
        d = sample.pyramid.open(mip)
        for rx, ry, rz in _regions(level.extent_xyz):
            got = np.asarray(vol[rx, ry, rz])[..., 0].transpose(2, 1, 0)
            assert np.array_equal(got, d[rz, ry, rx]), (level.key, rx, ry, rz)


def test_cloudvolume_reads_every_mip_over_http(image_server: BackgroundServer, image_sample: Sample) -> None:
    _check_all_mips(image_server.base_url, image_sample)


def test_cloudvolume_reads_an_absent_chunk_as_zeros(image_server: BackgroundServer) -> None:
    x, y, z = ABSENT_XYZ
    vol = _open(image_server.base_url, 0)
    assert not np.asarray(vol[x : x + 16, y : y + 16, z : z + 8]).any()


def test_cloudvolume_reads_a_segmentation(segmentation_server: BackgroundServer, segmentation_sample: Sample) -> None:
    assert _open(segmentation_server.base_url, 0).layer_type == "segmentation"
    _check_all_mips(segmentation_server.base_url, segmentation_sample)


@pytest.mark.parametrize("gzip", [False, True], ids=["raw", "gzip"])
def test_cloudvolume_reads_a_static_export(tmp_path: Path, image_sample: Sample, gzip: bool) -> None:
    out = tmp_path / "static"
    write_static_precomputed(str(image_sample.folder), str(out), gzip=gzip)
    _check_all_mips(f"file://{out}", image_sample)


def test_cloudvolume_reads_a_sharded_export(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "sharded"
    write_static_precomputed(str(image_sample.folder), str(out), gzip=True, sharded=True)
    _check_all_mips(f"file://{out}", image_sample)
