"""BlockfsStore read by zarr-python 3: exact levels, edges, absent blocks, dtypes, v1 volumes, metadata."""

# ruff: noqa: E402  # imports after pytest.importorskip: without zarr the module is skipped, not a collection error

from __future__ import annotations

import json
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from zarr_fixtures import (
    ABSENT_XYZ,
    PyramidSample,
    Volume,
    expected,
    sample_data,
    write_volume,
)

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import ChecksumError, ConfigurationError
from blockfs_tasks.zarr import BlockfsStore, ZarrView
from blockfs_tasks.zarr.chunks import frame_settings

V1 = Path(__file__).resolve().parents[1] / "data" / "blockfs-v1"
DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64"]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_volume_reads_exactly_with_edges_and_absent_blocks(volume: Volume, zarr_format: int) -> None:
    group = zarr.open_group(BlockfsStore(volume.path, zarr_format=zarr_format), mode="r")
    array = group["0"]
    assert array.shape == volume.expected.shape and array.chunks == (8, 16, 16)
    assert np.array_equal(array[...], volume.expected)
    assert np.array_equal(array[5:33, 7:49, 3:70], volume.expected[5:33, 7:49, 3:70])
    assert list(group.array_keys()) == ["0"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(tmp_path: Path, dtype: str) -> None:
    data = sample_data(dtype, (9, 20, 13))
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (8, 8, 4), absent={(8, 8, 4)})
    want = expected(data, (8, 8, 4), {(8, 8, 4)})
    for zarr_format in (2, 3):
        store = BlockfsStore(path, zarr_format=zarr_format)
        got = zarr.open_group(store, mode="r")["0"][...]
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, want), (dtype, zarr_format)
    for key in ("0/0/0/0", "0/2/2/1"):  # an interior frame and a padded corner
        assert frame_settings(store.view.get(key.replace("0/", "0/c/", 1))) == (np.dtype(dtype).itemsize, "shuffle")


@pytest.mark.parametrize("case", ["v1_uint16_zstd", "v1_uint8_lz4_sparse"])
def test_format_1_volumes(case: str) -> None:
    want = np.load(V1 / case / "expected.npy")
    for zarr_format in (2, 3):
        store = BlockfsStore(V1 / case / "precomputed.blockfs", zarr_format=zarr_format)
        got = zarr.open_group(store, mode="r")["0"][...]
        assert np.array_equal(got, want)


def test_pyramid_levels_and_scales(pyramid: PyramidSample) -> None:
    group = zarr.open_group(BlockfsStore(pyramid.folder), mode="r")
    assert sorted(group.array_keys()) == [str(i) for i in range(len(pyramid.levels))]
    for i, want in enumerate(pyramid.levels):
        assert np.array_equal(group[str(i)][...], want)
    ms = group.attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "micrometer" for a in ms["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    for level, scale in zip(pyramid.pyramid.levels, scales, strict=True):
        x, y, z = level.resolution_nm_xyz
        assert scale == pytest.approx([z / 1000, y / 1000, x / 1000])
    assert scales[0] == pytest.approx([0.010, 0.004, 0.004]) and scales[1][2] == pytest.approx(0.008)


def test_zarr_v3_ngff_05_metadata(pyramid: PyramidSample) -> None:
    group = zarr.open_group(BlockfsStore(pyramid.folder, zarr_format=3), mode="r")
    assert group.metadata.zarr_format == 3
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5" and len(ome["multiscales"][0]["datasets"]) == len(pyramid.levels)
    assert np.array_equal(group["1"][...], pyramid.levels[1])


@pytest.mark.parametrize("which", ["new", "v1_uint16_zstd", "v1_uint8_lz4_sparse"])
def test_frame_headers_agree_with_the_codec_metadata(volume: Volume, which: str) -> None:
    """numcodecs decodes from the frame header; the metadata must still tell the truth about it (every chunk)."""
    path = volume.path if which == "new" else V1 / which / "precomputed.blockfs"
    for zarr_format in (2, 3):
        view = ZarrView(path, zarr_format=zarr_format)
        keys = [k for k in view.all_keys() if k not in view.documents]
        assert keys
        meta = json.loads(view.documents["0/.zarray" if zarr_format == 2 else "0/zarr.json"])
        if zarr_format == 2:
            itemsize = np.dtype(meta["dtype"]).itemsize
            shuffle = "shuffle" if meta["compressor"]["shuffle"] == 1 else "noshuffle"
        else:
            blosc = meta["codecs"][-1]["configuration"]
            itemsize, shuffle = blosc["typesize"], blosc["shuffle"]
        for key in keys:  # interior frames as stored, edge chunks as padded
            assert frame_settings(view.get(key)) == (itemsize, shuffle), key


def test_interior_chunks_are_the_stored_frames(volume: Volume) -> None:
    d = Directory.open(str(volume.path))
    view = ZarrView(volume.path)
    entry = d.index[d.grid.position(16, 0, 0)]
    with open(d.block_filenames[entry["file"] - 1], "rb") as f:
        f.seek(int(entry["offset"]))
        stored = f.read(int(entry["size"]))
    assert view.get("0/0/0/1") == stored


def test_absent_and_unknown_keys() -> None:
    view = ZarrView(V1 / "v1_uint8_lz4_sparse" / "precomputed.blockfs")
    d = Directory.open(str(V1 / "v1_uint8_lz4_sparse" / "precomputed.blockfs"))
    absent = next(o for o in d.grid.origins() if not d.has_block(*o))
    bx, by, bz = d.grid.block_xyz
    key = f"0/{absent[2] // bz}/{absent[1] // by}/{absent[0] // bx}"
    assert view.get(key) is None and not view.exists(key)
    for bad in ("0/99/0/0", "1/0/0/0", "0/0/0", "0/a/0/0", "0/c/0/0/0", "00/0/0/0", "zarr.json", "../x"):
        assert view.get(bad) is None and not view.exists(bad), bad


def test_listing_names_present_chunks_only(volume: Volume) -> None:
    store = BlockfsStore(volume.path)

    async def collect(it):
        return [k async for k in it]

    from zarr.core.sync import sync

    keys = sync(collect(store.list()))
    d = Directory.open(str(volume.path))
    chunks = [k for k in keys if k.startswith("0/") and not k.endswith(".zarray")]
    assert len(chunks) == len(d) == d.grid.n_blocks - len(ABSENT_XYZ)
    assert set(sync(collect(store.list_dir(""))) ) == {".zgroup", ".zattrs", ".zmetadata", "0"}
    assert "3" in sync(collect(store.list_dir("0")))
    assert sync(store.exists("0/0/0/0")) and not sync(store.exists("0/1/1/1"))  # (16, 16, 8) is absent


def test_store_is_read_only_picklable_and_comparable(volume: Volume) -> None:
    store = BlockfsStore(volume.path)
    copy = pickle.loads(pickle.dumps(store))
    assert copy == store and copy != BlockfsStore(volume.path, zarr_format=3)
    assert np.array_equal(zarr.open_group(copy, mode="r")["0"][...], volume.expected)
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_group(store, mode="r")["0"][0, 0, 0] = 1
    with pytest.raises(ValueError):
        store.with_read_only(False)


def test_a_corrupt_frame_is_an_error_not_wrong_voxels(volume: Volume) -> None:
    d = Directory.open(str(volume.path))
    entry = d.index[d.grid.position(16, 0, 0)]
    with open(d.block_filenames[entry["file"] - 1], "r+b") as f:
        f.seek(int(entry["offset"]) + int(entry["size"]) - 1)
        last = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ChecksumError):
        zarr.open_group(BlockfsStore(volume.path), mode="r")["0"][0:8, 0:16, 16:32]


def test_chunk_reads_never_copy_the_index(tmp_path: Path) -> None:
    """A 2-million-block volume: opening and reading a chunk allocate far less than its 40 MB index."""
    path = tmp_path / "big.blockfs"
    d = Directory(1280 * 4, 1280 * 4, 640, np.uint8, str(path), 32, 32, 8)  # 160 * 160 * 80 = 2,048,000 blocks
    d.create()
    d.write_block(np.full((8, 32, 32), 7, np.uint8), 32, 64, 16)
    d.close()
    store = BlockfsStore(path)
    array = zarr.open_group(store, mode="r")["0"]
    tracemalloc.start()
    block = array[16:24, 64:96, 32:64]
    absent = array[0:8, 0:32, 0:32]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (block == 7).all() and not absent.any()
    assert peak < 4 << 20, peak  # the index is 2,048,000 x 20 bytes = 41 MB


def test_bad_arguments(volume: Volume, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        BlockfsStore(volume.path, zarr_format=4)
    with pytest.raises(ConfigurationError):
        BlockfsStore(volume.path, resolution_nm_xyz=(1, 0, 1))
    with pytest.raises(ConfigurationError):
        BlockfsStore(tmp_path)  # a folder without a pyramid info


def test_importing_the_zarr_view_pulls_in_neither_luigi_nor_zarr() -> None:
    import subprocess
    import sys

    code = "import sys, blockfs_tasks.zarr; print(sorted(m for m in ('luigi', 'zarr', 'dask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_edge_chunks_are_padded_into_memcpyed_frames(volume: Volume) -> None:
    """On the fly an edge chunk costs one decode and no encode: a clevel-0 (memcpyed) Blosc frame, exact decoded."""
    from numcodecs import Blosc

    view = ZarrView(volume.path)
    chunks = view.levels[0]
    gz, gy, gx = chunks.grid_shape
    for chunk in [(gz - 1, 0, 0), (0, gy - 1, 0), (0, 0, gx - 1), (gz - 1, gy - 1, gx - 2)]:
        frame = view.get(view.chunk_key(0, chunk))
        assert frame is not None
        nbytes = int(np.prod(chunks.chunk_shape)) * 2
        assert len(frame) == nbytes + 16 and frame[2] & 0x2, chunk  # memcpyed flag of the Blosc1 header
        got = np.frombuffer(Blosc().decode(bytes(frame)), np.uint16).reshape(chunks.chunk_shape)
        origin = [i * c for i, c in zip(chunk, chunks.chunk_shape, strict=True)]
        want = volume.expected[origin[0] : origin[0] + 8, origin[1] : origin[1] + 16, origin[2] : origin[2] + 16]
        pad = np.zeros(chunks.chunk_shape, np.uint16)
        pad[: want.shape[0], : want.shape[1], : want.shape[2]] = want
        assert np.array_equal(got, pad), chunk
