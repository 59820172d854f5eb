"""Volumes, pyramids and an HTTP server for the zarr view tests.

The volumes are awkward on purpose: extents that are not multiples of the
block size on every axis (edge chunks zarr needs padded), anisotropic blocks,
and blocks never written (absent chunks that read as zeros).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.pyramid import Pyramid, build_pyramid
from blockfs_tasks.zarr import ZarrView, zarr_http_response
from blockfs_tasks.zarr.route import zarr_route_key

SHAPE_ZYX = (37, 50, 71)  # edges on every axis with BLOCK_XYZ
BLOCK_XYZ = (16, 16, 8)
RESOLUTION_NM_XYZ = (4.0, 4.0, 10.0)
ABSENT_XYZ = {(16, 16, 8), (64, 48, 32)}  # an interior and a corner (edge) block never written


def write_volume(
    path: Path,
    data: np.ndarray,
    block_xyz: tuple[int, int, int] = BLOCK_XYZ,
    absent: set[tuple[int, int, int]] = frozenset(),
    **kw: object,
) -> Directory:
    """A volume holding ``data`` (z, y, x), except the blocks at ``absent`` origins (x, y, z)."""
    z, y, x = data.shape
    d = Directory(x, y, z, data.dtype, str(path), *block_xyz, **kw)  # type: ignore[arg-type]  # kw: Directory's keyword options
    d.create()
    for ox, oy, oz in d.grid.origins():
        if (ox, oy, oz) in absent:
            continue
        sz, sy, sx = d.grid.block_shape_at(ox, oy, oz)
        d.write_block(data[oz : oz + sz, oy : oy + sy, ox : ox + sx], ox, oy, oz)
    d.close()
    return Directory.open(str(path))


def expected(data: np.ndarray, block_xyz: tuple[int, int, int], absent: set[tuple[int, int, int]]) -> np.ndarray:
    """``data`` with the absent blocks zeroed."""
    out = data.copy()
    bx, by, bz = block_xyz
    for x, y, z in absent:
        out[z : z + bz, y : y + by, x : x + bx] = 0
    return out


def sample_data(dtype: str, shape: tuple[int, int, int] = SHAPE_ZYX, seed: int = 3) -> np.ndarray:
    """Smooth-ish random data of ``dtype`` using its whole range (negative values and NaN-free floats)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)


@dataclass
class Volume:
    """A volume on disk and what it must read as, (z, y, x)."""

    path: Path
    expected: np.ndarray


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    """uint16, edges on every axis, two absent blocks, resolution in the metadata."""
    data = sample_data("uint16")
    path = tmp_path / "vol" / "precomputed.blockfs"
    path.parent.mkdir()
    write_volume(path, data, absent=ABSENT_XYZ, metadata={"resolution_nm_xyz": list(RESOLUTION_NM_XYZ)})
    return Volume(path, expected(data, BLOCK_XYZ, ABSENT_XYZ))


@dataclass
class PyramidSample:
    """A pyramid folder and each level as the core reads it."""

    folder: Path
    pyramid: Pyramid
    levels: list[np.ndarray]


@pytest.fixture
def pyramid(tmp_path: Path, volume: Volume) -> PyramidSample:
    """A 3-level mean pyramid of ``volume`` (level 0 hard-linked)."""
    folder = tmp_path / "pyr"
    p = build_pyramid(str(volume.path), str(folder), RESOLUTION_NM_XYZ, max_levels=3, n_threads=1)
    return PyramidSample(folder, p, [p.open(i)[:, :, :] for i in range(len(p.levels))])


class ZarrServer:
    """A loopback HTTP server of the ``/zarr/`` route (the same function blockfs-serve wires in)."""

    def __init__(self, view: ZarrView) -> None:
        view_ = view
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: avoid delayed-ACK stalls

            def _respond(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                requests.append(path)
                key = zarr_route_key(path)
                if key is not None:
                    status, headers, data = zarr_http_response(view_, key)
                else:
                    status, headers, data = 404, [("Content-Length", "0")], b""
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._respond(True)

            def do_HEAD(self) -> None:
                self._respond(False)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/zarr"
        self.napari_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/blockfs.zarr"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(path_or_view)`` starts a server; every server is stopped at the end of the test."""
    servers: list[ZarrServer] = []

    def start(source: object) -> ZarrServer:
        view = source if isinstance(source, ZarrView) else ZarrView(str(source))
        servers.append(ZarrServer(view))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
