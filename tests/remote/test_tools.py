"""The tools on remote volumes: blockfs-cp to and from S3 (resumable), info, verify, exports, serve, pyramid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import cp_main, info_main, tif_main, verify_main
from blockfs_tasks.core import Directory
from blockfs_tasks.core.naming import volume_files

from .conftest import make_volume
from .servers import CountingProxy, MotoServer, s3_options


@pytest.fixture(autouse=True)
def fsspec_config():
    """--storage-options becomes fsspec's config of the process: restore it after each test."""
    import fsspec.config

    saved = json.loads(json.dumps(fsspec.config.conf))
    yield
    fsspec.config.conf.clear()
    fsspec.config.conf.update(saved)


def options(endpoint: str) -> list[str]:
    return ["--storage-options", json.dumps(s3_options(endpoint))]


def local_volume_files(directory: Path) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in [str(directory), *volume_files(str(directory))]}


@pytest.fixture
def uploaded(tmp_path: Path, bucket: str, moto: MotoServer) -> tuple[Path, str, np.ndarray]:
    local = tmp_path / "src" / "vol.blockfs"
    local.parent.mkdir()
    data = make_volume(local)
    assert cp_main([str(local), f"s3://{bucket}/copies/", "--silent", *options(moto.endpoint)]) == 0
    return local, f"s3://{bucket}/copies/vol.blockfs", data


def test_cp_up_and_down_same_bytes_and_resumable(
    uploaded, tmp_path: Path, s3, bucket: str, proxy: CountingProxy, moto: MotoServer
) -> None:
    local, url, data = uploaded
    s3.invalidate_cache()
    objects = {Path(k).name: s3.cat_file(k) for k in s3.find(f"{bucket}/copies")}
    assert objects == local_volume_files(local)
    proxy.log.take()
    assert cp_main([str(local), f"s3://{bucket}/copies/", "--silent", *options(proxy.endpoint)]) == 0
    assert not [r for r in proxy.log.take() if r.method in ("PUT", "POST")]  # every object already there
    block = sorted(k for k in objects if k != "vol.blockfs")[0]
    s3.rm_file(f"{bucket}/copies/{block}")  # an interrupted copy: one block object missing
    assert cp_main([str(local), f"s3://{bucket}/copies/", "--silent", *options(proxy.endpoint)]) == 0
    puts = [r for r in proxy.log.take() if r.method == "PUT"]
    assert [r.path.rsplit("/", 1)[1].split("?")[0] for r in puts] == [block]

    down = tmp_path / "down"
    assert cp_main([url, str(down), "--silent", *options(proxy.endpoint)]) == 0
    assert local_volume_files(down / "vol.blockfs") == local_volume_files(local)
    np.testing.assert_array_equal(np.asarray(Directory.open(str(down / "vol.blockfs"))), data)
    proxy.log.take()
    assert cp_main([url, str(down), "--silent", *options(proxy.endpoint)]) == 0  # resumed: nothing downloaded
    assert not [r for r in proxy.log.take() if r.method == "GET" and "vol.blockfs" in r.path and r.range is None]


def test_cp_refuses_another_volume_at_the_destination(uploaded, tmp_path: Path, bucket: str, moto: MotoServer):
    other = tmp_path / "other" / "vol.blockfs"
    other.parent.mkdir()
    make_volume(other, seed=5)
    assert cp_main([str(other), f"s3://{bucket}/copies/", "--silent", *options(moto.endpoint)]) == 1


def test_info_verify_and_tiff_export_of_an_s3_volume(uploaded, tmp_path: Path, s3, moto: MotoServer, capsys) -> None:
    import tifffile

    local, url, data = uploaded
    assert info_main([url, "--json", *options(moto.endpoint)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == url and info["extent_xyz"] == [100, 90, 70]
    assert all(f.startswith(url.rsplit("/", 1)[0]) for f in info["block_files"])
    assert verify_main([url, "--silent", *options(moto.endpoint)]) == 0
    assert tif_main(["--input", url, "--output-pattern", str(tmp_path / "t" / "z%03d.tif"), "--silent",
                     "--z0", "60", "--z1", "70", *options(moto.endpoint)]) == 0
    for z in (60, 69):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "t" / f"z{z:03d}.tif"), data[z])
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    x, y, z = next(iter(d.block_origins()))
    entry = d.index[d.grid.position(x, y, z)]
    block_url = d.block_filenames[int(entry["file"]) - 1]
    raw = bytearray(s3.cat_file(block_url))
    raw[int(entry["offset"]) + 7] ^= 0x10
    s3.pipe_file(block_url, bytes(raw))
    capsys.readouterr()
    assert verify_main([url, "--silent", *options(moto.endpoint)]) == 1
    assert f"BAD block at (x, y, z) = ({x}, {y}, {z})" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["link", "reference"])
def test_pyramid_of_an_s3_volume(uploaded, tmp_path: Path, moto: MotoServer, placement: str) -> None:
    from blockfs_tasks.cli import pyramid_main
    from blockfs_tasks.pyramid import Pyramid

    local, url, data = uploaded
    out = tmp_path / f"pyr-{placement}"
    assert pyramid_main([url, str(out), "--level0", placement, "--max-levels", "2", "--silent",
                         *options(moto.endpoint)]) == 0
    pyramid = Pyramid.from_info(str(out))
    assert (pyramid.path(0) == url) == (placement == "reference")
    level1 = np.asarray(pyramid.open(1))
    expected = data[: data.shape[0] // 2 * 2, : data.shape[1] // 2 * 2, : data.shape[2] // 2 * 2]
    expected = expected.reshape(expected.shape[0] // 2, 2, expected.shape[1] // 2, 2, -1, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(level1[: expected.shape[0], : expected.shape[1], : expected.shape[2]], expected,
                               atol=1)


@pytest.mark.slow
def test_serve_an_s3_volume(uploaded, moto: MotoServer) -> None:
    import subprocess
    import sys
    import urllib.request

    local, url, data = uploaded
    code = "import sys; from blockfs_tasks.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, url, "--port", "0", *options(moto.endpoint)],
                            stdout=subprocess.PIPE, text=True)
    try:
        source = proc.stdout.readline().strip()
        http = source.removeprefix("precomputed://")
        info = json.loads(urllib.request.urlopen(f"{http}/info", timeout=60).read())
        scale = info["scales"][0]
        assert scale["size"] == [100, 90, 70]
        x, y, z = list(Directory.open(url, storage_options=s3_options(moto.endpoint)).block_origins())[-1]  # an edge
        x1, y1, z1 = min(x + 32, 100), min(y + 32, 90), min(z + 32, 70)
        raw = urllib.request.urlopen(f"{http}/{scale['key']}/{x}-{x1}_{y}-{y1}_{z}-{z1}", timeout=60).read()
        chunk = np.frombuffer(raw, data.dtype).reshape(z1 - z, y1 - y, x1 - x)  # raw precomputed: x fastest
        np.testing.assert_array_equal(chunk, data[z:z1, y:y1, x:x1])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_hdf5_export_of_an_s3_volume_resumes(uploaded, tmp_path: Path, moto: MotoServer) -> None:
    import h5py

    from blockfs_tasks.cli import hdf5_main
    from blockfs_tasks.export.hdf5_record import completed_planes

    local, url, data = uploaded
    dest = tmp_path / "out.h5"
    assert hdf5_main([url, str(dest), "/raw", "--z0", "0", "--z1", "32", "--silent", *options(moto.endpoint)]) == 0
    assert completed_planes(dest, "/raw", url) == [(0, 32)]  # recorded by URL: a rerun resumes
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f["/raw"][0:32], data[0:32])
