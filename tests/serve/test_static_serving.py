"""blockfs-serve --static: static precomputed trees served the way real clients need (CORS, Range, .gz).

tensorstore (over http) and cloud-volume (over http) read every kind of tree
the static export writes: raw, gzip, sharded, sharded + gzip.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core.errors import ConfigurationError
from blockfs_tasks.serve.server import BackgroundServer
from blockfs_tasks.serve.static import write_static_precomputed
from blockfs_tasks.serve.static_server import make_static_server, parse_range

from .conftest import ABSENT_XYZ, Sample

tensorstore = pytest.importorskip("tensorstore")

KINDS = {"raw": (False, False), "gzip": (True, False), "sharded": (False, True), "sharded-gzip": (True, True)}


@pytest.fixture(scope="module", params=list(KINDS))
def tree(
    request: pytest.FixtureRequest, image_sample: Sample, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, BackgroundServer]]:
    """Each kind of static tree, served by make_static_server on a free port."""
    use_gzip, sharded = KINDS[request.param]
    out = tmp_path_factory.mktemp(request.param) / "tree"
    write_static_precomputed(str(image_sample.folder), str(out), gzip=use_gzip, sharded=sharded)
    with BackgroundServer(make_static_server(str(out))) as server:
        yield request.param, out, server


def get(
    server: BackgroundServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
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


def test_tensorstore_reads_every_kind_of_tree_over_http(
    tree: tuple[str, Path, BackgroundServer], image_sample: Sample
) -> None:
    _, _, server = tree
    for i, level in enumerate(image_sample.pyramid.levels):
        store = tensorstore.open(
            {"driver": "neuroglancer_precomputed", "kvstore": server.base_url + "/", "scale_index": i}
        ).result()
        got = store.read().result()[..., 0].transpose(2, 1, 0)
        assert np.array_equal(got, image_sample.expected(i)), (tree[0], level.key)


def test_cloudvolume_reads_every_kind_of_tree_over_http(
    tree: tuple[str, Path, BackgroundServer], image_sample: Sample
) -> None:
    cloudvolume = pytest.importorskip("cloudvolume")
    _, _, server = tree
    for mip, level in enumerate(image_sample.pyramid.levels[:2]):
        vol = cloudvolume.CloudVolume(
            server.base_url, mip=mip, fill_missing=True, progress=False, cache=False, parallel=1
        )
        ex, ey, ez = level.extent_xyz
        got = np.asarray(vol[0:ex, 0:ey, 0:ez])[..., 0].transpose(2, 1, 0)
        assert np.array_equal(got, image_sample.expected(mip)), (tree[0], level.key)


def test_cors_everywhere_and_404_for_missing(tree: tuple[str, Path, BackgroundServer]) -> None:
    kind, _, server = tree
    x, y, z = ABSENT_XYZ
    for path, status in [("/info", 200), (f"/1_1_1/{x}-{x + 16}_{y}-{y + 16}_{z}-{z + 8}", 404), ("/1_1_1", 404),
                         ("/", 404), ("/../info", 404), ("/1_1_1/..%2f..%2finfo", 404), ("/%00", 404)]:
        got, headers, body = get(server, path)
        assert got == status, (kind, path)
        assert headers["access-control-allow-origin"] == "*", (kind, path)
        if status == 404:
            assert body  # never an empty 200
    got, headers, _ = get(server, "/info", {"Origin": "http://x", "Access-Control-Request-Method": "GET"}, "OPTIONS")
    assert got == 204 and headers["access-control-allow-origin"] == "*"


def test_gz_chunks_answer_the_plain_name(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "gz"
    write_static_precomputed(str(image_sample.level0), str(out), gzip=True)
    expected = image_sample.data[0:8, 0:16, 0:16].astype("<u2").tobytes()
    with BackgroundServer(make_static_server(str(out))) as server:
        status, headers, body = get(server, "/1_1_1/0-16_0-16_0-8", {"Accept-Encoding": "gzip"})
        assert status == 200 and headers["content-encoding"] == "gzip" and gzip.decompress(body) == expected
        status, headers, body = get(server, "/1_1_1/0-16_0-16_0-8")  # a client without gzip gets identity
        assert status == 200 and "content-encoding" not in headers and body == expected
        status, headers, body = get(server, "/1_1_1/0-16_0-16_0-8", {"Accept-Encoding": "gzip", "Range": "bytes=2-9"})
        assert status == 206 and body == expected[2:10] and headers["content-range"] == f"bytes 2-9/{len(expected)}"


def test_range_requests(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "sharded"
    write_static_precomputed(str(image_sample.level0), str(out), sharded=True)
    shard = sorted(os.listdir(out / "1_1_1"))[0]
    data = (out / "1_1_1" / shard).read_bytes()
    n = len(data)
    with BackgroundServer(make_static_server(str(out))) as server:
        path = f"/1_1_1/{shard}"
        status, headers, body = get(server, path)
        assert status == 200 and body == data and headers["accept-ranges"] == "bytes"
        for header, (start, end) in [("bytes=0-15", (0, 16)), ("bytes=10-", (10, n)), ("bytes=-7", (n - 7, n)),
                                     (f"bytes=5-{n + 100}", (5, n))]:
            status, headers, body = get(server, path, {"Range": header})
            assert status == 206 and body == data[start:end], header
            assert headers["content-range"] == f"bytes {start}-{end - 1}/{n}", header
            assert headers["access-control-allow-origin"] == "*"
            assert "Content-Range" in headers["access-control-expose-headers"]
        status, headers, _ = get(server, path, {"Range": f"bytes={n}-"})
        assert status == 416 and headers["content-range"] == f"bytes */{n}"
        status, _, body = get(server, path, {"Range": "bytes=0-1,5-6"})  # several ranges: the whole file
        assert status == 200 and body == data
        status, headers, body = get(server, path, {"Range": "bytes=0-15"}, "HEAD")
        assert status == 206 and body == b"" and headers["content-length"] == "16"


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=10-", 10) is False
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("items=0-1", 10) is None


def test_symlinks_out_of_the_tree_are_not_served(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "tree"
    write_static_precomputed(str(image_sample.level0), str(out))
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", out / "leak")
    with BackgroundServer(make_static_server(str(out))) as server:
        assert get(server, "/leak")[0] == 404


def test_a_folder_without_info_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no info"):
        make_static_server(str(tmp_path))


def test_serve_static_command(tmp_path: Path, image_sample: Sample) -> None:
    import subprocess
    import sys
    from urllib.parse import unquote, urlsplit

    out = tmp_path / "tree"
    write_static_precomputed(str(image_sample.folder), str(out), gzip=True)
    code = "import sys; from blockfs_tasks.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "--static", str(out), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        assert url.startswith("precomputed://http://127.0.0.1:"), url
        link = proc.stdout.readline().strip()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        state = json.loads(unquote(link.split("#!", 1)[1]))
        assert state["layers"][0]["source"] == url
        low, high = state["layers"][0]["shaderControls"]["normalized"]["range"]
        assert 0 <= low < high <= 60000
        parts = urlsplit(url.removeprefix("precomputed://"))
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/1_1_1/0-16_0-16_0-8", headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Encoding") == "gzip"
        assert gzip.decompress(resp.read()) == image_sample.data[0:8, 0:16, 0:16].astype("<u2").tobytes()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        proc.stderr.close()  # type: ignore[union-attr]  # stdout/stderr=PIPE
