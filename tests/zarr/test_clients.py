"""Real clients over the Store and over the ``/zarr/`` HTTP route.

The clients: dask, zarr-python, tensorstore, ome-zarr, napari-ome-zarr.
"""

# ruff: noqa: E402  # imports after pytest.importorskip: without zarr the module is skipped, not a collection error

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from zarr_fixtures import RESOLUTION_NM_XYZ, PyramidSample, Volume

from blockfs_tasks.zarr import BlockfsStore, ZarrView, to_dask

V1 = Path(__file__).resolve().parents[1] / "data" / "blockfs-v1"


# ------------------------------------------------------------------ dask
def test_to_dask_chunks_are_blocks(volume: Volume, pyramid: PyramidSample) -> None:
    array = to_dask(volume.path)
    assert array.chunksize == (8, 16, 16) and array.chunks[2][-1] == 71 - 64
    assert np.array_equal(array.compute(), volume.expected)
    assert np.array_equal(array[3:30, 10:45, 5:66].compute(), volume.expected[3:30, 10:45, 5:66])
    assert np.array_equal(to_dask(pyramid.folder, level=2).compute(), pyramid.levels[2])
    assert to_dask(volume.path).name == array.name  # deterministic: same volume, same tasks


def test_directory_to_dask_reads_the_volume_exactly(volume: Volume) -> None:
    from blockfs_tasks.core import Directory

    array = Directory.open(volume.path).to_dask()
    assert array.chunks[0][0] == Directory.open(volume.path).chunks[0]
    assert np.array_equal(array.compute(), volume.expected)


def test_to_dask_format_1_sparse() -> None:
    case = V1 / "v1_uint8_lz4_sparse"
    assert np.array_equal(to_dask(case / "precomputed.blockfs").compute(), np.load(case / "expected.npy"))


def test_dask_from_zarr_over_the_store(pyramid: PyramidSample) -> None:
    array = da.from_zarr(BlockfsStore(pyramid.folder), component="1")
    assert np.array_equal(array.compute(), pyramid.levels[1])


# ------------------------------------------------------------------ HTTP
def test_http_zarr_python_and_dask(pyramid: PyramidSample, serve) -> None:
    pytest.importorskip("aiohttp")
    server = serve(pyramid.folder)
    group = zarr.open_group(server.url, mode="r")
    for i, want in enumerate(pyramid.levels):
        assert np.array_equal(group[str(i)][...], want)
    assert np.array_equal(da.from_zarr(server.url, component="0").compute(), pyramid.levels[0])
    assert any(r.endswith("/.zmetadata") for r in server.requests)


def test_http_route_sends_frames_verbatim_and_404_for_absent(volume: Volume, serve) -> None:
    import urllib.error
    import urllib.request

    view = ZarrView(volume.path)
    server = serve(view)
    with urllib.request.urlopen(server.url + "/0/0/0/0") as r:
        assert r.read() == view.get("0/0/0/0") and r.headers["Content-Type"] == "application/octet-stream"
    with urllib.request.urlopen(server.url + "/.zattrs") as r:
        assert json.load(r)["multiscales"][0]["axes"][0]["name"] == "z"
    with urllib.request.urlopen(server.napari_url + "/0/.zarray") as r:  # the alias napari needs
        assert json.load(r)["chunks"] == [8, 16, 16]
    for missing in ("/0/1/1/1", "/nope", "/0/../.zattrs", ""):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + missing)
        assert e.value.code == 404


def test_http_tensorstore_zarr_driver(volume: Volume, serve) -> None:
    ts = pytest.importorskip("tensorstore")
    server = serve(volume.path)
    array = ts.open({"driver": "zarr", "kvstore": server.url + "/", "path": "0/", "open": True}, read=True).result()
    assert array.domain.shape == volume.expected.shape
    assert np.array_equal(array.read().result(), volume.expected)


def test_http_tensorstore_zarr3_driver(volume: Volume, serve) -> None:
    ts = pytest.importorskip("tensorstore")
    server = serve(ZarrView(volume.path, zarr_format=3))
    array = ts.open({"driver": "zarr3", "kvstore": server.url + "/0/"}, read=True).result()
    assert np.array_equal(array.read().result(), volume.expected)


def test_ome_zarr_reader_levels_and_scales(pyramid: PyramidSample, serve) -> None:
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    server = serve(pyramid.folder)
    nodes = list(Reader(parse_url(server.url))())
    image = nodes[0]
    assert image.load(Multiscales) is not None
    assert len(image.data) == len(pyramid.levels)
    for level, want in zip(image.data, pyramid.levels, strict=True):
        assert np.array_equal(np.asarray(level), want)
    transforms = image.metadata["coordinateTransformations"]
    x, y, z = RESOLUTION_NM_XYZ
    assert transforms[0][0]["scale"] == pytest.approx([z / 1000, y / 1000, x / 1000])
    assert transforms[1][0]["scale"] == pytest.approx([z / 1000, 2 * y / 1000, 2 * x / 1000])


def test_napari_ome_zarr_reader(pyramid: PyramidSample, serve) -> None:
    pytest.importorskip("napari_ome_zarr")
    from napari_ome_zarr import napari_get_reader

    server = serve(pyramid.folder)
    reader = napari_get_reader(server.url)
    assert reader is not None
    layers = reader(server.url)
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs.get("multiscale", True)
    assert len(data) == len(pyramid.levels)
    assert np.array_equal(np.asarray(data[0]), pyramid.levels[0])
    assert np.asarray(kwargs["scale"]) == pytest.approx([RESOLUTION_NM_XYZ[2] / 1000, 0.004, 0.004])


NAPARI_SCRIPT = """
import json, sys
import numpy as np
import napari

url, out, shot = sys.argv[1:4]
viewer = napari.Viewer(show=True)
layers = viewer.open(url, plugin="napari-ome-zarr")
layer = layers[0]
np.save(out, np.asarray(layer.data[0]))
viewer.dims.ndisplay = 2
viewer.dims.set_point(0, layer.data[0].shape[0] // 2 * layer.scale[0])
viewer.reset_view()
if shot:
    viewer.screenshot(shot, canvas_only=False)
report = {"multiscale": bool(layer.multiscale), "levels": len(layer.data), "scale": list(map(float, layer.scale))}
print(json.dumps(report))
viewer.close()
"""


@pytest.mark.slow
def test_napari_viewer_under_xvfb(pyramid: PyramidSample, serve, tmp_path: Path) -> None:
    """A real napari viewer (Qt, under Xvfb) opens the HTTP route as a multiscale image with exact level 0."""
    import os
    import shutil
    import subprocess
    import sys

    pytest.importorskip("napari")
    pytest.importorskip("PyQt5.QtWidgets")
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (Debian: apt-get install xvfb)")
    server = serve(pyramid.folder)
    out = tmp_path / "level0.npy"
    shot = os.environ.get("BLOCKFS_NAPARI_SCREENSHOT", "")
    run = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]
        + [sys.executable, "-c", NAPARI_SCRIPT, server.napari_url, str(out), shot],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["multiscale"] and report["levels"] == len(pyramid.levels)
    x_nm, y_nm, z_nm = RESOLUTION_NM_XYZ
    assert report["scale"] == pytest.approx([z_nm / 1000, y_nm / 1000, x_nm / 1000])
    assert np.array_equal(np.load(out), pyramid.levels[0])
