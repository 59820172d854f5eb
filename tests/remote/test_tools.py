"""The tools on remote volumes: blockfs-cp to and from S3 (resumable), info, verify, exports, serve, pyramid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import info_main, tif_main, verify_main
from blockfs_tasks.cli_remote import cp_main
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
