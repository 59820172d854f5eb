"""Static precomputed export: file layout, tensorstore over file://, sharding, the command."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.serve.static import (
    Sharding,
    compressed_morton_code,
    default_sharding,
    encode_shard,
    write_static_precomputed,
)

from .conftest import ABSENT_XYZ, Sample, write_volume

tensorstore = pytest.importorskip("tensorstore")


def _check_with_tensorstore(out: Path, sample: Sample) -> None:
    for i, level in enumerate(sample.pyramid.levels):
        store = tensorstore.open(
            {"driver": "neuroglancer_precomputed", "kvstore": f"file://{out}/", "scale_index": i}
        ).result()
        assert tuple(store.shape) == (*level.extent_xyz, 1)
        got = store.read().result()[..., 0].transpose(2, 1, 0)
        assert np.array_equal(got, sample.expected(i)), level.key
        ex, ey, ez = level.extent_xyz
        rx, ry, rz = slice(ex // 3, ex - 1), slice(1, max(2, ey // 2)), slice(ez // 4, ez)
        part = store[rx, ry, rz, 0].read().result().transpose(2, 1, 0)
        assert np.array_equal(part, sample.pyramid.open(i)[rz, ry, rx]), level.key


def test_unsharded_files_are_named_as_chunk_urls(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "static"
    info = write_static_precomputed(str(image_sample.folder), str(out))
    assert json.loads((out / "info").read_text()) == info
    for i, scale in enumerate(info["scales"]):
        d = image_sample.pyramid.open(i)
        names = sorted(os.listdir(out / scale["key"]))
        assert len(names) == len(d)
        for name in names[:5]:
            (x0, x1), (y0, y1), (z0, z1) = (map(int, part.split("-")) for part in name.split("_"))
            assert (out / scale["key"] / name).read_bytes() == d[z0:z1, y0:y1, x0:x1].astype("<u2").tobytes()
    x, y, z = ABSENT_XYZ
    assert not (out / "1_1_1" / f"{x}-{x + 16}_{y}-{y + 16}_{z}-{z + 8}").exists()
    assert (out / "1_1_1" / "64-71_48-50_32-37").stat().st_size == 7 * 2 * 5 * 2  # truncated, not padded


def test_tensorstore_reads_the_unsharded_export(tmp_path: Path, image_sample: Sample) -> None:
    write_static_precomputed(str(image_sample.folder), str(tmp_path / "static"))
    _check_with_tensorstore(tmp_path / "static", image_sample)


def test_gzip_unsharded_writes_gz_files(tmp_path: Path, image_sample: Sample) -> None:
    out = tmp_path / "gz"
    write_static_precomputed(str(image_sample.level0), str(out), gzip=True)
    data = gzip.decompress((out / "1_1_1" / "0-16_0-16_0-8.gz").read_bytes())
    assert data == image_sample.data[0:8, 0:16, 0:16].astype("<u2").tobytes()
    assert not (out / "1_1_1" / "0-16_0-16_0-8").exists()


@pytest.mark.parametrize("use_gzip", [False, True], ids=["raw", "gzip"])
def test_tensorstore_reads_the_sharded_export(tmp_path: Path, image_sample: Sample, use_gzip: bool) -> None:
    out = tmp_path / "sharded"
    info = write_static_precomputed(str(image_sample.folder), str(out), gzip=use_gzip, sharded=True)
    sharding = info["scales"][0]["sharding"]
    assert sharding["@type"] == "neuroglancer_uint64_sharded_v1"
    assert sharding["data_encoding"] == ("gzip" if use_gzip else "raw")
    assert sharding["shard_bits"] > 0  # level 0 spans several shards
    assert all(name.endswith(".shard") for name in os.listdir(out / "1_1_1"))
    _check_with_tensorstore(out, image_sample)


def test_tensorstore_reads_a_sharded_segmentation(tmp_path: Path, segmentation_sample: Sample) -> None:
    out = tmp_path / "seg"
    info = write_static_precomputed(str(segmentation_sample.folder), str(out), sharded=True)
    assert info["type"] == "segmentation" and info["data_type"] == "uint64"
    _check_with_tensorstore(out, segmentation_sample)


def test_sharded_export_of_a_large_grid(tmp_path: Path) -> None:
    """A grid with uneven bits per axis (x 5, y 1, z 3 bits) over many shards and minishards."""
    data = np.random.default_rng(3).integers(0, 255, (17, 7, 90), dtype=np.uint8)
    write_volume(tmp_path / "v.blockfs", data, (3, 4, 3), {(0, 0, 0), (87, 4, 15)})
    out = tmp_path / "out"
    info = write_static_precomputed(str(tmp_path / "v.blockfs"), str(out), sharded=True)
    assert info["scales"][0]["sharding"]["shard_bits"] == 9 - 6
    store = tensorstore.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{out}/"}).result()
    got = store.read().result()[..., 0].transpose(2, 1, 0)
    expected = data.copy()
    expected[0:3, 0:4, 0:3] = 0
    expected[15:17, 4:7, 87:90] = 0
    assert np.array_equal(got, expected)


def test_compressed_morton_code() -> None:
    # Neuroglancer's examples: every axis with bits left takes turns, x first.
    assert compressed_morton_code((0, 0, 0), (4, 4, 4)) == 0
    assert compressed_morton_code((1, 0, 0), (4, 4, 4)) == 0b1
    assert compressed_morton_code((0, 1, 0), (4, 4, 4)) == 0b10
    assert compressed_morton_code((0, 0, 1), (4, 4, 4)) == 0b100
    assert compressed_morton_code((2, 0, 0), (4, 4, 4)) == 0b1000
    # y has 1 bit: after it is used up, only x and z alternate
    assert compressed_morton_code((0, 0, 2), (4, 2, 4)) == 0b10000
    assert compressed_morton_code((3, 1, 3), (4, 2, 4)) == 0b11111
    assert compressed_morton_code((4, 0, 0), (8, 1, 1)) == 0b100


def test_default_sharding_covers_every_bit() -> None:
    for grid in [(1, 1, 1), (2, 1, 1), (5, 4, 5), (30, 2, 6), (1000, 1000, 300)]:
        s = default_sharding(grid)
        assert s.preshift_bits + s.minishard_bits + s.shard_bits == sum((n - 1).bit_length() for n in grid)
    assert Sharding(0, 0, 0).shard_file(0) == "0.shard"
    assert Sharding(0, 0, 9).shard_file(10) == "00a.shard"


def test_encode_shard_layout() -> None:
    sharding = Sharding(preshift_bits=0, minishard_bits=1, shard_bits=0)
    shard = encode_shard({1: b"one", 2: b"two", 4: b"four"}, sharding)
    index = np.frombuffer(shard[:32], "<u8").reshape(2, 2)
    body = shard[32:]
    even = np.frombuffer(body[index[0, 0] : index[0, 1]], "<u8").reshape(3, -1).astype(np.int64)
    assert list(np.cumsum(even[0])) == [2, 4]  # delta-coded ids
    starts = np.cumsum(even[1] + np.concatenate([[0], even[2][:-1]]))
    assert [body[s : s + n] for s, n in zip(starts, even[2], strict=True)] == [b"two", b"four"]
    odd = np.frombuffer(body[index[1, 0] : index[1, 1]], "<u8").reshape(3, -1).astype(np.int64)
    assert list(odd[0]) == [1] and body[odd[1][0] : odd[1][0] + odd[2][0]] == b"one"


def test_precomputed_command(tmp_path: Path, image_sample: Sample) -> None:
    from blockfs_tasks.cli import precomputed_main

    out = tmp_path / "cmd"
    argv = [str(image_sample.folder), str(out), "--sharded", "--silent", "--type", "segmentation"]
    assert precomputed_main(argv) == 0
    info = json.loads((out / "info").read_text())
    assert info["type"] == "segmentation" and len(info["scales"]) == len(image_sample.pyramid.levels)
    assert precomputed_main([str(tmp_path / "missing.blockfs"), str(out), "--silent"]) == 1
