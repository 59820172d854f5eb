"""The HTTP server, for real on 127.0.0.1: raw HTTP, tensorstore, and the blockfs-serve command."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

from blockfs_tasks.serve.precomputed import PrecomputedVolume
from blockfs_tasks.serve.server import BackgroundServer, accepts_gzip, gzip_compressor

from .conftest import ABSENT_XYZ, Sample

tensorstore = pytest.importorskip("tensorstore")


def request(
    server: BackgroundServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: status, headers (lower-case names), body."""
    host, port = server.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_request(server: BackgroundServer, data: bytes) -> bytes:
    """Send raw bytes (a malformed request line, say) and return the whole raw response."""
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_cors(headers: dict[str, str]) -> None:
    assert headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"]


def test_binds_loopback_on_a_free_port(image_server: BackgroundServer) -> None:
    host, port = image_server.server.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    assert image_server.server.url() == f"precomputed://http://127.0.0.1:{port}"


def test_info(image_server: BackgroundServer, image_sample: Sample) -> None:
    status, headers, body = request(image_server, "/info")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert_cors(headers)
    info = json.loads(body)
    assert [s["key"] for s in info["scales"]] == [level.key for level in image_sample.pyramid.levels]


def test_chunk_identity_and_gzip(image_server: BackgroundServer, image_sample: Sample) -> None:
    expected = image_sample.data[8:16, 32:48, 16:32].astype("<u2").tobytes()
    path = "/1_1_1/16-32_32-48_8-16"
    status, headers, body = request(image_server, path)
    assert status == 200 and body == expected and "content-encoding" not in headers
    assert headers["content-length"] == str(len(expected))
    assert_cors(headers)
    status, headers, body = request(image_server, path, headers={"Accept-Encoding": "br, gzip;q=0.5"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == expected
    for refuse in ("gzip;q=0", "identity", "br", "*;q=0"):
        status, headers, body = request(image_server, path, headers={"Accept-Encoding": refuse})
        assert status == 200 and body == expected and "content-encoding" not in headers, refuse


@pytest.mark.parametrize(
    "header, ok",
    [("gzip", True), ("GZIP", True), ("deflate, gzip", True), ("gzip;q=0", False), ("gzip; q=0.0", False),
     ("*", True), ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("", False), (None, False)],
)
def test_accepts_gzip(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok


@pytest.mark.parametrize("isal", [True, False], ids=["isal-if-installed", "zlib"])
def test_gzip_compressor(monkeypatch: pytest.MonkeyPatch, isal: bool) -> None:
    if not isal:
        monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError
    data = np.arange(100_000, dtype="<u2").tobytes()
    for level in (1, 6, 9):
        packed = gzip_compressor(level)(data)
        assert gzip.decompress(packed) == data and len(packed) < len(data)


def test_gzip_off(image_source: PrecomputedVolume) -> None:
    with BackgroundServer(image_source, gzip_level=0) as server:
        status, headers, body = request(server, "/1_1_1/0-16_0-16_0-8", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and len(body) == 16 * 16 * 8 * 2


def test_head_has_headers_and_no_body(image_server: BackgroundServer) -> None:
    status, headers, body = request(image_server, "/1_1_1/0-16_0-16_0-8", "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == 16 * 16 * 8 * 2
    assert_cors(headers)


def test_absent_chunk_is_404_never_empty_200(image_server: BackgroundServer) -> None:
    x, y, z = ABSENT_XYZ
    status, headers, body = request(image_server, f"/1_1_1/{x}-{x + 16}_{y}-{y + 16}_{z}-{z + 8}")
    assert status == 404
    assert_cors(headers)


@pytest.mark.parametrize(
    "path",
    [
        "/provenance/x",
        "/",
        "/1_1_1/0-16_0-16_0-7",
        "/1_1_1/8-24_0-16_0-8",
        "/1_1_1",
        "/../info",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/1_1_1/..%2f..%2f..%2fetc%2fpasswd",
        "/1_1_1/%2e%2e/info",
        "/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/1_1_1/precomputed.blockfs",
        "/1_1_1/level0.blockfs.0",
        "/1_1_1/../../level0.blockfs",
        "/pyramid/info",
        "/info/../1_1_1/precomputed.blockfs",
        "/%00",
    ],
)
def test_nothing_else_is_reachable(image_server: BackgroundServer, path: str) -> None:
    status, headers, body = request(image_server, path)
    assert status == 404, (path, body[:100])
    assert_cors(headers)


def test_cors_on_preflight_and_on_errors(image_server: BackgroundServer) -> None:
    status, headers, body = request(
        image_server,
        "/1_1_1/0-16_0-16_0-8",
        "OPTIONS",
        {"Origin": "https://neuroglancer-demo.appspot.com", "Access-Control-Request-Method": "GET"},
    )
    assert status in (200, 204) and body == b""
    assert_cors(headers)
    status, headers, _ = request(image_server, "/info", "POST", {"Content-Length": "0"})
    assert status == 405 and "GET" in headers["allow"]
    assert_cors(headers)
    status, headers, _ = request(image_server, "/info", "PROPFIND")
    assert status == 501
    assert_cors(headers)
    for garbage in (b"GARBAGE\r\n\r\n", b"GET /info HTTP/one\r\n\r\n", b"GET /info HTTP/1.1 extra\r\n\r\n"):
        response = raw_request(image_server, garbage)
        assert response.startswith(b"HTTP/1.") and b" 400 " in response.split(b"\r\n")[0], garbage
        assert b"Access-Control-Allow-Origin: *" in response


def test_keep_alive_serves_many_requests_on_one_connection(
    image_server: BackgroundServer, image_sample: Sample
) -> None:
    host, port = image_server.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        sock = None
        for path in ["/info", "/provenance", "/1_1_1/0-16_0-16_0-8", "/2_2_1/0-16_0-16_0-8", "/info"]:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (200, 404)
            sock = sock or conn.sock
            assert conn.sock is sock  # the same connection throughout
    finally:
        conn.close()


def test_requests_are_served_in_parallel(image_server: BackgroundServer) -> None:
    """A client stalled in the middle of its request does not hold up the others."""
    host, port = image_server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as stalled:
        stalled.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        status, _, _ = request(image_server, "/info")
        assert status == 200
        stalled.sendall(b"\r\n")
        assert stalled.recv(12).startswith(b"HTTP/1.1 200")


def test_concurrent_clients_get_exact_chunks(image_server: BackgroundServer, image_sample: Sample) -> None:
    d = image_sample.pyramid.open(0)
    origins = [o for o in d.grid.origins() if d.has_block(*o)]

    def fetch(origin: tuple[int, int, int]) -> bool:
        x, y, z = origin
        sz, sy, sx = d.grid.block_shape_at(x, y, z)
        status, _, body = request(image_server, f"/1_1_1/{x}-{x + sx}_{y}-{y + sy}_{z}-{z + sz}",
                                  headers={"Accept-Encoding": "gzip"})
        return status == 200 and gzip.decompress(body) == d.read_block(x, y, z).tobytes()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(fetch, origins * 2))


def _ts_open(server: BackgroundServer, scale_index: int, kind: str = "image") -> object:
    return tensorstore.open(
        {"driver": "neuroglancer_precomputed", "kvstore": server.base_url + "/", "scale_index": scale_index}
    ).result()


def test_tensorstore_reads_every_scale_exactly(image_server: BackgroundServer, image_sample: Sample) -> None:
    for i, level in enumerate(image_sample.pyramid.levels):
        store = _ts_open(image_server, i)
        expected = image_sample.expected(i)
        assert tuple(store.shape) == (*level.extent_xyz, 1)
        assert store.dtype.name == "uint16"
        whole = store.read().result()[..., 0].transpose(2, 1, 0)  # (x, y, z) -> (z, y, x)
        assert np.array_equal(whole, expected), level.key
        ex, ey, ez = level.extent_xyz
        regions = [
            (slice(ex // 3, ex - 1), slice(1, max(2, ey // 2)), slice(ez // 4, ez)),  # not aligned
            (slice(ex - 3, ex), slice(ey - 2, ey), slice(ez - 1, ez)),  # far corner, edge chunks
            (slice(0, 1), slice(0, ey), slice(0, 1)),
        ]
        for rx, ry, rz in regions:
            got = store[rx, ry, rz, 0].read().result().transpose(2, 1, 0)
            assert np.array_equal(got, image_sample.pyramid.open(i)[rz, ry, rx]), (level.key, rx, ry, rz)


def test_tensorstore_reads_an_absent_chunk_as_zeros(image_server: BackgroundServer, image_sample: Sample) -> None:
    x, y, z = ABSENT_XYZ
    got = _ts_open(image_server, 0)[x : x + 16, y : y + 16, z : z + 8, 0].read().result()
    assert not got.any()


def test_tensorstore_reads_a_segmentation(segmentation_server: BackgroundServer, segmentation_sample: Sample) -> None:
    status, _, body = request(segmentation_server, "/info")
    assert json.loads(body)["type"] == "segmentation"
    for i, level in enumerate(segmentation_sample.pyramid.levels):
        store = _ts_open(segmentation_server, i)
        assert store.dtype.name == "uint64"
        got = store.read().result()[..., 0].transpose(2, 1, 0)
        assert np.array_equal(got, segmentation_sample.expected(i)), level.key


def test_serve_command_prints_the_url_and_serves(image_sample: Sample) -> None:
    code = "import sys; from blockfs_tasks.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(image_sample.level0), "--port", "0", "--type", "image",
         "--resolution", "3", "3", "7.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        assert line.startswith("precomputed://http://127.0.0.1:"), (
            line, proc.stderr.read() if proc.poll() is not None else ""  # type: ignore[union-attr]  # stdout/stderr=PIPE
        )
        url = urlsplit(line.removeprefix("precomputed://"))
        assert url.port and url.port > 0
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", "/info")
        info = json.loads(conn.getresponse().read())
        conn.close()
        assert info["scales"][0]["resolution"] == [3.0, 3.0, 7.5]
        assert [s["key"] for s in info["scales"]] == ["1_1_1"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        proc.stderr.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE


def test_serve_command_fails_cleanly_on_a_missing_volume(tmp_path: object) -> None:
    from blockfs_tasks.cli import serve_main

    assert serve_main([str(tmp_path) + "/nope.blockfs", "--port", "0"]) == 1


def test_server_stops_with_idle_keep_alive_clients(image_source: PrecomputedVolume) -> None:
    server = BackgroundServer(image_source)
    server.__enter__()
    host, port = server.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", "/info")
        conn.getresponse().read()  # the connection stays open, its handler thread waits for more
        stopper = threading.Thread(target=server.__exit__, args=(None, None, None))
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive(), "shutdown waited for an idle keep-alive connection"
    finally:
        conn.close()


def test_an_absurd_chunk_coordinate_is_a_400_without_a_traceback(
    image_server: BackgroundServer, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "9" * 5000
    with caplog.at_level("DEBUG", logger="blockfs_tasks"):
        status, headers, body = request(image_server, f"/1_1_1/{huge}-{huge}_0-16_0-8")
    assert status == 400 and b"digits" in body
    assert_cors(headers)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]


def test_blocks_published_after_start_are_served_without_restart(tmp_path: object) -> None:
    from pathlib import Path

    from blockfs_tasks.core import Directory
    from blockfs_tasks.serve import open_precomputed

    from .conftest import write_volume

    data = np.random.default_rng(5).integers(0, 4000, (16, 32, 32)).astype(np.uint16)
    path = Path(str(tmp_path)) / "live.blockfs"
    write_volume(path, data, (16, 16, 16), {(16, 16, 0)})
    with BackgroundServer(open_precomputed(str(path))) as server:
        chunk = "/1_1_1/16-32_16-32_0-16"
        assert request(server, chunk)[0] == 404
        with Directory.open(str(path), "r+") as d:
            d.write_block(data[0:16, 16:32, 16:32], 16, 16, 0)
        status, _, body = request(server, chunk)
        assert status == 200 and body == data[0:16, 16:32, 16:32].astype("<u2").tobytes()
        assert request(server, "/1_1_1/0-16_0-16_0-16")[2] == data[0:16, 0:16, 0:16].tobytes()


def test_neuroglancer_link_range_fits_the_data(image_source: PrecomputedVolume, image_sample: Sample) -> None:
    from urllib.parse import unquote

    from blockfs_tasks.serve.link import link_for_volume

    url = link_for_volume(image_source, "precomputed://http://127.0.0.1:1")
    assert url.startswith("https://neuroglancer-demo.appspot.com/#!")
    layer = json.loads(unquote(url.split("#!", 1)[1]))["layers"][0]
    assert layer["type"] == "image" and layer["source"] == "precomputed://http://127.0.0.1:1"
    low, high = layer["shaderControls"]["normalized"]["range"]
    coarse = image_sample.expected(len(image_sample.pyramid.levels) - 1)
    assert coarse.min() <= low < high <= coarse.max()
    assert high - low > 0.5 * (int(coarse.max()) - int(coarse.min()))  # not the uint16 range 0-65535: fits the data
