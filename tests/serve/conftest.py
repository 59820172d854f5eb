"""Volumes, pyramids and running servers shared by the serving tests.

The volumes are small but awkward on purpose: extents that are not multiples
of the block size (truncated edge chunks), anisotropic blocks and voxels, and
a block never written (a 404 chunk that reads as zeros).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.pyramid import Pyramid, build_pyramid
from blockfs_tasks.serve import PrecomputedVolume, open_precomputed
from blockfs_tasks.serve.server import BackgroundServer

SHAPE_ZYX = (37, 50, 71)
BLOCK_XYZ = (16, 16, 8)
RESOLUTION_NM_XYZ = (4.0, 4.0, 10.0)
ABSENT_XYZ = (16, 16, 8)  # level-0 block never written


def write_volume(
    path: Path, data: np.ndarray, block_xyz: tuple[int, int, int], absent: set[tuple[int, int, int]],
    compression: str = "zstd",
) -> Directory:
    """A volume holding ``data`` (z, y, x), except the blocks at ``absent`` origins."""
    z, y, x = data.shape
    d = Directory(x, y, z, data.dtype, str(path), *block_xyz, compression=compression)
    d.create()
    for ox, oy, oz in d.grid.origins():
        if (ox, oy, oz) in absent:
            continue
        sz, sy, sx = d.grid.block_shape_at(ox, oy, oz)
        d.write_block(data[oz : oz + sz, oy : oy + sy, ox : ox + sx], ox, oy, oz)
    d.close()
    return Directory.open(str(path))


@dataclass
class Sample:
    """A pyramid on disk and its level-0 data."""

    level0: Path
    folder: Path
    data: np.ndarray
    pyramid: Pyramid

    def expected(self, i: int) -> np.ndarray:
        """Level ``i`` as the core reads it, (z, y, x)."""
        return self.pyramid.open(i)[:, :, :]


def _sample(root: Path, dtype: str, mode: str) -> Sample:
    rng = np.random.default_rng(7)
    if mode == "mode":
        data = rng.integers(0, 5, SHAPE_ZYX).astype(dtype) * np.array(10**9 + 7, dtype)  # big, sparse labels
    else:
        data = rng.integers(0, 60000, SHAPE_ZYX).astype(dtype)
    level0 = root / "level0.blockfs"
    write_volume(level0, data, BLOCK_XYZ, {ABSENT_XYZ})
    folder = root / "pyramid"
    pyramid = build_pyramid(str(level0), str(folder), RESOLUTION_NM_XYZ, mode=mode)
    return Sample(level0, folder, data, pyramid)


@pytest.fixture(scope="session")
def image_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """A uint16 image pyramid (mean), 5 levels."""
    return _sample(tmp_path_factory.mktemp("image"), "uint16", "mean")


@pytest.fixture(scope="session")
def segmentation_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """A uint64 segmentation pyramid (mode)."""
    return _sample(tmp_path_factory.mktemp("segmentation"), "uint64", "mode")


@pytest.fixture(scope="session")
def image_source(image_sample: Sample) -> PrecomputedVolume:
    return open_precomputed(str(image_sample.folder))


@pytest.fixture(scope="session")
def image_server(image_source: PrecomputedVolume) -> Iterator[BackgroundServer]:
    """The image pyramid served on 127.0.0.1, a free port."""
    with BackgroundServer(image_source) as server:
        yield server


@pytest.fixture(scope="session")
def segmentation_server(segmentation_sample: Sample) -> Iterator[BackgroundServer]:
    with BackgroundServer(open_precomputed(str(segmentation_sample.folder))) as server:
        yield server
