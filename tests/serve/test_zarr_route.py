"""blockfs-serve's /zarr/ route: the same pyramid as an OME-Zarr group, read by real zarr clients over HTTP."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.serve import open_precomputed
from blockfs_tasks.serve.server import BackgroundServer, make_server
from blockfs_tasks.zarr.view import ZarrView

from .conftest import Sample


@pytest.fixture(scope="module")
def zarr_server(image_sample: Sample):
    source = open_precomputed(str(image_sample.folder))
    server = make_server(source, zarr_view=ZarrView(image_sample.folder))
    with BackgroundServer(server) as background:
        yield background


def test_zarr_python_reads_every_level_over_http(zarr_server: BackgroundServer, image_sample: Sample) -> None:
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("aiohttp")
    group = zarr.open_group(f"{zarr_server.base_url}/zarr", mode="r")
    for i in range(len(image_sample.pyramid.levels)):
        np.testing.assert_array_equal(group[str(i)][...], image_sample.expected(i))


def test_tensorstore_zarr_driver_over_http(zarr_server: BackgroundServer, image_sample: Sample) -> None:
    ts = pytest.importorskip("tensorstore")
    array = ts.open({"driver": "zarr", "kvstore": f"{zarr_server.base_url}/zarr/", "path": "1/"}).result()
    np.testing.assert_array_equal(array.read().result(), image_sample.expected(1))


def test_interior_chunks_are_the_stored_frames_and_the_precomputed_route_still_works(
    zarr_server: BackgroundServer, image_sample: Sample
) -> None:
    d = Directory.open(image_sample.pyramid.open(0).directory_filename)
    entry = d.index[0]
    frame = Path(d.block_filenames[int(entry["file"]) - 1]).read_bytes()[
        int(entry["offset"]) : int(entry["offset"]) + int(entry["size"])
    ]
    parts = urlsplit(zarr_server.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/zarr/0/0/0/0")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == frame
    assert resp.getheader("Access-Control-Allow-Origin") == "*"
    conn.request("GET", "/info")
    resp = conn.getresponse()
    assert resp.status == 200 and b"scales" in resp.read()
    conn.request("GET", "/zarr/0/nope/..")
    assert conn.getresponse().status == 404
    conn.close()


def test_serve_command_prints_the_zarr_urls(image_sample: Sample) -> None:
    code = "import sys; from blockfs_tasks.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(image_sample.folder), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # type: ignore[union-attr]  # stdout/stderr=PIPE
        http_url = lines[0].removeprefix("precomputed://")
        assert lines[2] == f"zarr (OME-Zarr): {http_url}/zarr   napari: {http_url}/blockfs.zarr"
        parts = urlsplit(http_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/zarr/.zattrs")
        resp = conn.getresponse()
        assert resp.status == 200 and b"multiscales" in resp.read()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        proc.stderr.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE
