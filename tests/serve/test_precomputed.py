"""The precomputed mapping: info JSON, chunk names, chunk bytes (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core.errors import ConfigurationError
from blockfs_tasks.serve import PrecomputedVolume, open_precomputed
from blockfs_tasks.serve.precomputed import chunk_name

from .conftest import ABSENT_XYZ, BLOCK_XYZ, RESOLUTION_NM_XYZ, SHAPE_ZYX, Sample, write_volume


def test_info_of_a_pyramid(image_sample: Sample, image_source: PrecomputedVolume) -> None:
    info = image_source.info()
    assert info["type"] == "image"
    assert info["data_type"] == "uint16"
    assert info["num_channels"] == 1
    assert [s["key"] for s in info["scales"]] == [level.key for level in image_sample.pyramid.levels]
    assert info["scales"][0]["key"] == "1_1_1"
    assert info["scales"][1]["key"] == "2_2_1"  # z is 2.5x coarser: x, y first
    for scale, level in zip(info["scales"], image_sample.pyramid.levels, strict=True):
        assert scale["size"] == list(level.extent_xyz)
        assert scale["resolution"] == [r * f for r, f in zip(RESOLUTION_NM_XYZ, level.factors_xyz, strict=True)]
        assert scale["voxel_offset"] == [0, 0, 0]
        assert scale["chunk_sizes"] == [list(BLOCK_XYZ)]
        assert scale["encoding"] == "raw"
    assert info["scales"][0]["size"] == [SHAPE_ZYX[2], SHAPE_ZYX[1], SHAPE_ZYX[0]]


def test_chunk_bytes_are_x_fastest_little_endian(image_sample: Sample, image_source: PrecomputedVolume) -> None:
    d = image_sample.pyramid.open(0)
    x, y, z = 64, 48, 32  # the corner block: truncated in x, y and z
    name = chunk_name(d.grid.extent_xyz, d.grid.block_xyz, (x, y, z))
    assert name == "64-71_48-50_32-37"
    data = image_source.read_chunk("1_1_1", name)
    assert data is not None and len(data) == 7 * 2 * 5 * 2
    raw = np.frombuffer(data, "<u2")
    # x varies fastest: voxel (x, y, z) is at ((z * ny) + y) * nx + x
    expected = image_sample.data[32:37, 48:50, 64:71]
    for zz, yy, xx in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (4, 1, 6)]:
        assert raw[(zz * 2 + yy) * 7 + xx] == expected[zz, yy, xx]
    assert np.array_equal(raw.reshape(5, 2, 7), expected)


@pytest.mark.parametrize(
    "key, name",
    [
        ("1_1_1", "0-16_0-16_0-7"),  # wrong end
        ("1_1_1", "0-32_0-16_0-8"),  # two chunks
        ("1_1_1", "8-24_0-16_0-8"),  # off the grid
        ("1_1_1", "00-16_0-16_0-8"),  # leading zero
        ("1_1_1", "64-80_48-50_32-37"),  # padded edge chunk
        ("1_1_1", "80-96_0-16_0-8"),  # outside the volume
        ("1_1_1", "0-16_0-16_0-8.gz"),
        ("1_1_1", "0-16_0-16"),
        ("1_1_1", "٠-16_0-16_0-8"),  # a non-ASCII digit
        ("9_9_9", "0-16_0-16_0-8"),  # unknown scale
        ("1_1_1", ""),
    ],
)
def test_anything_but_exactly_one_chunk_is_not_found(image_source: PrecomputedVolume, key: str, name: str) -> None:
    assert image_source.locate(key, name) is None
    assert image_source.read_chunk(key, name) is None


def test_absent_block_has_no_chunk(image_sample: Sample, image_source: PrecomputedVolume) -> None:
    x, y, z = ABSENT_XYZ
    name = f"{x}-{x + 16}_{y}-{y + 16}_{z}-{z + 8}"
    assert image_source.locate("1_1_1", name) is not None
    assert image_source.read_chunk("1_1_1", name) is None
    names = {n for n, _ in image_source.chunks(image_source.scales[0])}
    assert name not in names and len(names) == len(image_sample.pyramid.open(0))


@pytest.mark.parametrize("path", ["/info", "info", "/1_1_1/0-16_0-16_0-8"])
def test_resolve_serves_info_and_chunks(image_source: PrecomputedVolume, path: str) -> None:
    assert image_source.resolve(path)


@pytest.mark.parametrize(
    "path", ["/", "", "/provenance/x", "/../info", "/1_1_1/../info", "/1_1_1/0-16_0-16_0-8/x", "//info", "/1_1_1/"]
)
def test_resolve_refuses_other_paths(image_source: PrecomputedVolume, path: str) -> None:
    assert image_source.resolve(path) is None


def test_single_volume_and_overrides(tmp_path: Path) -> None:
    data = np.arange(6 * 10 * 12, dtype=np.uint32).reshape(6, 10, 12)
    write_volume(tmp_path / "v.blockfs", data, (8, 8, 4), set())
    source = open_precomputed(str(tmp_path / "v.blockfs"), "segmentation", (2, 3, 4.5))
    info = source.info()
    assert info["type"] == "segmentation" and info["data_type"] == "uint32"
    assert [s["key"] for s in info["scales"]] == ["1_1_1"]
    assert info["scales"][0]["resolution"] == [2.0, 3.0, 4.5]
    assert info["scales"][0]["size"] == [12, 10, 6]
    default = open_precomputed(str(tmp_path / "v.blockfs")).info()
    assert default["type"] == "image" and default["scales"][0]["resolution"] == [1.0, 1.0, 1.0]


def test_pyramid_resolution_override_scales_every_level(image_sample: Sample) -> None:
    info = open_precomputed(str(image_sample.folder), resolution_nm_xyz=(1, 1, 2)).info()
    for scale, level in zip(info["scales"], image_sample.pyramid.levels, strict=True):
        assert scale["resolution"] == [float(f) for f in np.multiply((1, 1, 2), level.factors_xyz)]


def test_dtypes_without_a_precomputed_type_are_refused(tmp_path: Path) -> None:
    write_volume(tmp_path / "f.blockfs", np.zeros((4, 4, 4), np.float64), (4, 4, 4), set())
    with pytest.raises(ConfigurationError, match="float64"):
        open_precomputed(str(tmp_path / "f.blockfs"))


def test_a_folder_without_info_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="pyramid info"):
        open_precomputed(str(tmp_path))
