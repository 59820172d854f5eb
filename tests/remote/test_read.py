"""Reading volumes from S3 (moto_server on loopback) and from a Range web server through the Directory API."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import ChecksumError, CorruptIndexError, MissingFileError, ReadOnlyError
from blockfs_tasks.core.naming import volume_files
from blockfs_tasks.core.remote_index import RemotePagedIndex

from .conftest import make_volume
from .servers import CountingProxy, MotoServer, RangeServer, s3_options

V1_DATA = Path(__file__).resolve().parent.parent / "data" / "blockfs-v1"


def upload(s3, local: Path, url: str) -> None:
    """Put a local volume's directory and block files beside ``url`` (the tests' own setup, not blockfs-cp)."""
    folder = url.rsplit("/", 1)[0]
    for f in [local, *map(Path, volume_files(str(local)))]:
        s3.put_file(str(f), f"{folder}/{f.name.replace(local.name, url.rsplit('/', 1)[1])}")


@pytest.fixture
def s3_volume(tmp_path: Path, s3, bucket: str) -> tuple[str, np.ndarray]:
    local = tmp_path / "vol.blockfs"
    data = make_volume(local)
    url = f"s3://{bucket}/data/vol.blockfs"
    upload(s3, local, url)
    return url, data


def test_s3_read_whole_edges_and_blocks(s3_volume, moto: MotoServer) -> None:
    url, data = s3_volume
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    assert d.remote and d.shape == data.shape
    np.testing.assert_array_equal(d[:, :, :], data)
    np.testing.assert_array_equal(d[60:70, 85:90, 95:100], data[60:70, 85:90, 95:100])  # edge blocks
    np.testing.assert_array_equal(d[5, 3:88, 1:99], data[5, 3:88, 1:99])
    rng = np.random.default_rng(1)
    for _ in range(10):
        x, y, z = (int(rng.integers(0, n // 32 + 1)) * 32 for n in (99, 89, 69))
        np.testing.assert_array_equal(d.read_block(x, y, z), data[z : z + 32, y : y + 32, x : x + 32])


def test_s3_one_get_per_block_once_the_page_is_cached(s3_volume, moto: MotoServer, proxy: CountingProxy) -> None:
    url, data = s3_volume
    d = Directory.open(url, storage_options=s3_options(proxy.endpoint))
    opened = proxy.log.take()
    assert [r.method for r in opened].count("GET") <= 2  # head (+ page table) and the first index page at most
    present = [o for o in d.block_origins()]
    proxy.log.take()
    for x, y, z in present[:12]:
        d.read_block(x, y, z)
        requests = proxy.log.take()
        assert [(r.method, r.range is not None) for r in requests] == [("GET", True)], requests
    assert isinstance(d.index, RemotePagedIndex)


def test_s3_region_read_merges_neighbouring_frames(s3_volume, moto: MotoServer, proxy: CountingProxy) -> None:
    url, data = s3_volume
    d = Directory.open(url, storage_options=s3_options(proxy.endpoint))
    n_present = len(d)
    proxy.log.take()
    np.testing.assert_array_equal(np.asarray(d), data)
    gets = [r for r in proxy.log.take() if r.method == "GET"]
    assert n_present > 25 and len(d.block_filenames) == 1
    assert len(gets) == 1 and gets[0].range  # the frames lie one after another: one ranged GET for all


def test_s3_flipped_byte_is_an_error(s3_volume, s3, moto: MotoServer) -> None:
    url, _ = s3_volume
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    x, y, z = next(iter(d.block_origins()))
    entry = d.index[d.grid.position(x, y, z)]
    block_url = d.block_filenames[int(entry["file"]) - 1]
    raw = bytearray(s3.cat_file(block_url))
    raw[int(entry["offset"]) + int(entry["size"]) // 2] ^= 0x40
    s3.pipe_file(block_url, bytes(raw))
    fresh = Directory.open(url, storage_options=s3_options(moto.endpoint))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fresh.read_block(x, y, z)
    with pytest.raises(ChecksumError):
        fresh[:, :, :]


def test_s3_corrupt_index_page_is_an_error(tmp_path: Path, s3, bucket: str, moto: MotoServer) -> None:
    local = tmp_path / "big.blockfs"
    make_volume(local, (600, 64, 64), block=8, dtype="uint8")  # 75 x 8 x 8 = 4800 blocks: two index pages
    url = f"s3://{bucket}/big.blockfs"
    upload(s3, local, url)
    raw = bytearray(s3.cat_file(url))
    raw[-5] ^= 0x01  # an entry of the last page
    s3.pipe_file(url, bytes(raw))
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    d.read_block(0, 0, 0)  # the first page is sound
    assert d.index.pages_fetched == 1 and d.index.n_pages == 2  # opening never fetched the whole index
    with pytest.raises(CorruptIndexError, match="index page 1"):
        d.read_block(592, 56, 56)


def test_remote_volumes_are_read_only(s3_volume, moto: MotoServer) -> None:
    url, _ = s3_volume
    with pytest.raises(ReadOnlyError, match="read-only"):
        Directory.open(url, "r+", storage_options=s3_options(moto.endpoint))
    with pytest.raises(ReadOnlyError, match="read-only"):
        Directory(10, 10, 10, "uint8", url).create()


def test_s3_missing_object(bucket: str, moto: MotoServer) -> None:
    with pytest.raises(MissingFileError, match="no such object"):
        Directory.open(f"s3://{bucket}/nothing.blockfs", storage_options=s3_options(moto.endpoint))


def test_pickled_remote_directory_reads(s3_volume, moto: MotoServer) -> None:
    import pickle

    url, data = s3_volume
    d = pickle.loads(pickle.dumps(Directory.open(url, storage_options=s3_options(moto.endpoint))))
    np.testing.assert_array_equal(d[10:40, 20:50, 30:60], data[10:40, 20:50, 30:60])


@pytest.mark.parametrize("case", sorted(p.name for p in V1_DATA.iterdir()))
def test_format_1_0_0_from_s3(case: str, s3, bucket: str, moto: MotoServer) -> None:
    local = Directory.open(str(V1_DATA / case / "precomputed.blockfs"))
    expected = np.asarray(local)
    url = f"s3://{bucket}/{case}/precomputed.blockfs"
    for f in (V1_DATA / case).iterdir():
        s3.put_file(str(f), f"{bucket}/{case}/{f.name}")
    d = Directory.open(url, storage_options=s3_options(moto.endpoint))
    assert d.version == "1.0.0"
    np.testing.assert_array_equal(np.asarray(d), expected)


def test_http_read_and_request_count(tmp_path: Path, http_server: RangeServer) -> None:
    root = Path(http_server.root)
    data = make_volume(root / "vol.blockfs")
    url = f"{http_server.url}/vol.blockfs"
    d = Directory.open(url)
    np.testing.assert_array_equal(d[:, :, :], data)
    np.testing.assert_array_equal(d[69, 80:90, 90:100], data[69, 80:90, 90:100])
    http_server.log.take()
    for x, y, z in list(d.block_origins())[:8]:
        d.read_block(x, y, z)
        requests = http_server.log.take()
        assert [(r.method, r.range is not None) for r in requests] == [("GET", True)], requests


def test_http_flipped_byte_is_an_error(tmp_path: Path, http_server: RangeServer) -> None:
    root = Path(http_server.root)
    make_volume(root / "vol.blockfs")
    d = Directory.open(f"{http_server.url}/vol.blockfs")
    x, y, z = next(iter(d.block_origins()))
    entry = d.index[d.grid.position(x, y, z)]
    block = root / Path(d.block_filenames[int(entry["file"]) - 1]).name
    raw = bytearray(block.read_bytes())
    raw[int(entry["offset"]) + 20] ^= 0xFF
    block.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        Directory.open(f"{http_server.url}/vol.blockfs").read_block(x, y, z)


def test_format_1_0_0_over_http(http_server: RangeServer) -> None:
    case = sorted(p.name for p in V1_DATA.iterdir())[0]
    shutil.copytree(V1_DATA / case, Path(http_server.root) / case)
    expected = np.asarray(Directory.open(str(V1_DATA / case / "precomputed.blockfs")))
    d = Directory.open(f"{http_server.url}/{case}/precomputed.blockfs")
    np.testing.assert_array_equal(np.asarray(d), expected)


@pytest.mark.parametrize("extra, source", [({}, "ObstoreS3Source"), ({"use_listings_cache": False}, "FsspecSource")])
def test_s3_through_obstore_or_fsspec(s3_volume, proxy: CountingProxy, extra, source: str) -> None:
    """An option obstore has no name for keeps s3fs (the fsspec path gs:// and http(s):// take too)."""
    pytest.importorskip("obstore")
    url, data = s3_volume
    d = Directory.open(url, storage_options={**s3_options(proxy.endpoint), **extra})
    assert type(d.byte_source).__name__ == source
    origins = list(d.block_origins())
    proxy.log.take()
    for x, y, z in origins[:5]:
        np.testing.assert_array_equal(d.read_block(x, y, z), data[z : z + 32, y : y + 32, x : x + 32])
    assert [r.method for r in proxy.log.take()] == ["GET"] * 5
    np.testing.assert_array_equal(d[:, :, :], data)
