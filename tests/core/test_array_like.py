"""A Directory is a read-only array to numpy, dask and napari (issue 8 item 7).

``np.asarray(volume)`` used to return the block origins (an (n, 3) int array,
because a Directory iterates over origins) and there was no ``ndim``, so
``dask.array.from_array(d)`` and napari failed. These tests use the real
libraries.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory

from .helpers import random_block, same


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Directory, np.ndarray]:
    """A 37 x 50 x 61 (z, y, x) uint16 volume in 16 x 16 x 8 (x, y, z) blocks, one block never written."""
    data = random_block((37, 50, 61), "uint16", 7)
    data[:8, :16, :16] = 0
    path = tmp_path_factory.mktemp("vol") / "v.blockfs"
    d = Directory(61, 50, 37, np.uint16, path, 16, 16, 8)
    d.create()
    for x, y, z in d.grid.origins():
        if (x, y, z) != (0, 0, 0):
            sz, sy, sx = d.get_block_size(x, y, z)
            d.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    d.close()
    return Directory.open(path), data


def test_numpy_sees_the_voxels(volume: tuple[Directory, np.ndarray]) -> None:
    d, data = volume
    assert (d.ndim, d.shape, d.dtype, d.size, d.nbytes) == (3, (37, 50, 61), np.uint16, data.size, data.nbytes)
    assert d.chunks == (8, 16, 16)
    assert same(np.asarray(d), data)
    assert same(np.array(d, dtype=np.float32), data.astype(np.float32))
    assert float(np.mean(np.asarray(d))) == pytest.approx(float(data.mean()))
    with pytest.raises(ValueError, match="without a copy"):
        np.asarray(d, copy=False)


def test_block_iteration_has_an_explicit_name_and_the_old_calls_still_work(
    volume: tuple[Directory, np.ndarray],
) -> None:
    d, _ = volume
    origins = list(d.block_origins())
    assert len(origins) == d.grid.n_blocks - 1 and (0, 0, 0) not in origins
    assert list(d) == origins and len(d) == len(origins)  # `for x, y, z in d` as the README showed it
    assert bool(d)
    empty = Directory(8, 8, 8, np.uint8, Path(d.directory_filename).parent / "empty.blockfs")
    empty.create()
    empty.close()
    assert bool(Directory.open(empty.directory_filename)) and len(Directory.open(empty.directory_filename)) == 0


def test_dask_from_array(volume: tuple[Directory, np.ndarray]) -> None:
    da = pytest.importorskip("dask.array")
    d, data = volume
    lazy = da.from_array(d)
    assert lazy.shape == d.shape and lazy.dtype == d.dtype
    # aligned on blocks: no block decoded twice
    for axis_chunks, block, n in zip(lazy.chunks, d.chunks, d.shape, strict=True):
        edges = np.cumsum(axis_chunks)
        assert all(e % block == 0 or e == n for e in edges), (lazy.chunks, d.chunks)
    import dask

    with dask.config.set({"array.chunk-size": "20kB"}):  # several chunks: still whole blocks
        big = da.from_array(d)
    assert big.numblocks != (1, 1, 1)
    assert all(all(c % b == 0 for c in cs[:-1]) for cs, b in zip(big.chunks, d.chunks, strict=True)), big.chunks
    assert same(big.compute(), data)
    assert same(lazy.compute(), data)
    assert same(lazy[3:30, 10:40:3, 60].compute(), data[3:30, 10:40:3, 60])
    assert int(lazy.max().compute()) == int(data.max())
    rechunked = da.from_array(d, chunks=(16, 50, 61))
    assert same(rechunked.compute(scheduler="threads"), data)


def test_dask_with_processes_pickles_the_volume_not_its_voxels(volume: tuple[Directory, np.ndarray]) -> None:
    da = pytest.importorskip("dask.array")
    d, data = volume
    assert len(pickle.dumps(d)) < 4096
    total = da.from_array(d, chunks=(16, 50, 61)).astype(np.int64).sum().compute(scheduler="processes", num_workers=2)
    assert int(total) == int(data.astype(np.int64).sum())


def test_napari_image_layer(volume: tuple[Directory, np.ndarray]) -> None:
    """napari's Image layer (no viewer window needed) takes the volume as it takes a zarr or dask array."""
    layers = pytest.importorskip("napari.layers")
    d, data = volume
    layer = layers.Image(d, name="volume")
    assert layer.ndim == 3 and not layer.multiscale
    assert layer.data.shape == d.shape
    low, high = layer.contrast_limits
    assert data.min() <= low < high <= data.max()
    assert same(np.asarray(layer.data[5]), data[5])


VIEWER = r"""
import sys
import numpy as np
import napari
from blockfs_tasks.core import Directory

d = Directory.open(sys.argv[1])
viewer = napari.Viewer(show=False)
layer = viewer.add_image(d)
viewer.dims.set_point(0, 5)
shown = np.asarray(layer._slice.image.view)
ok = layer.data.shape == d.shape and np.array_equal(shown, d[5])
viewer.close()
print("exact" if ok else "wrong", flush=True)
"""


@pytest.mark.slow
def test_a_real_napari_viewer_shows_a_plane(volume: tuple[Directory, np.ndarray], tmp_path: Path) -> None:
    """napari's own Viewer (under Xvfb) adds the volume and shows plane 5 exactly."""
    import shutil
    import subprocess
    import sys

    pytest.importorskip("napari")
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (apt-get install xvfb): napari's viewer needs a display")
    d, _ = volume
    script = tmp_path / "viewer.py"
    script.write_text(VIEWER)
    result = subprocess.run(["xvfb-run", "-a", sys.executable, str(script), d.directory_filename],
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1:] == ["exact"], result.stderr[-2000:]
