"""Float codecs in the zarr view: pcodec volumes appear with zarr's pcodec codec; fpzip and kempressed
volumes are decoded by the view; zarr-python reads every one exactly, edges and absent blocks included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from zarr_fixtures import ABSENT_XYZ, BLOCK_XYZ, expected, write_volume

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import ConfigurationError
from blockfs_tasks.zarr import BlockfsStore, ZarrView
from blockfs_tasks.zarr.refs import write_references

zarr = pytest.importorskip("zarr")

SHAPE_ZYX = (37, 50, 71)


def float_data(codec: dict) -> np.ndarray:
    rng = np.random.default_rng(12)
    data = rng.random(SHAPE_ZYX).astype(np.float32)
    if codec["compression"] != "kempressed":
        data = data * 2e3 - 1e3
        data[0, 0, :5] = [np.nan, -0.0, np.inf, -np.inf, np.finfo(np.float32).smallest_subnormal]
    return data


CODECS = [
    {"compression": "pcodec"},
    {"compression": "fpzip"},
    {"compression": "kempressed"},
    {"compression": "pcodec", "bitround_keepbits": 9},
    {"compression": "zstd", "shuffle": 2},
]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: "-".join(map(str, c.values())))
def test_zarr_reads_float_codecs_exactly(tmp_path: Path, codec: dict, zarr_format: int) -> None:
    path = tmp_path / "v.blockfs"
    write_volume(path, float_data(codec), BLOCK_XYZ, ABSENT_XYZ, **codec)
    core = expected(Directory.open(path)[:, :, :], BLOCK_XYZ, ABSENT_XYZ)  # what the core reads (lossy: rounded)
    got = zarr.open_group(BlockfsStore(path, zarr_format=zarr_format), mode="r")["0"][...]
    assert got.dtype == np.float32 and got.tobytes() == core.tobytes()


def test_metadata_names_the_zarr_codec(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_volume(path, float_data({"compression": "pcodec"}), BLOCK_XYZ, compression="pcodec", compression_level=5)
    v2, v3 = ZarrView(path, 2), ZarrView(path, 3)
    assert json.loads(v2.get("0/.zarray"))["compressor"]["id"] == "pcodec"
    assert json.loads(v3.get("0/zarr.json"))["codecs"] == [{"name": "numcodecs.pcodec", "configuration": {"level": 5}}]
    assert v2.get("0/0/0/0") == Directory.open(path).read_frame(0, 0, 0)  # interior chunks: the stored frame
    fp = tmp_path / "fp.blockfs"
    write_volume(fp, float_data({"compression": "fpzip"}), BLOCK_XYZ, compression="fpzip")
    assert json.loads(ZarrView(fp, 2).get("0/.zarray"))["compressor"] is None
    assert [c["name"] for c in json.loads(ZarrView(fp, 3).get("0/zarr.json"))["codecs"]] == ["bytes"]


def test_references_refuse_fpzip_volumes(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_volume(path, float_data({"compression": "fpzip"}), BLOCK_XYZ, compression="fpzip")
    with pytest.raises(ConfigurationError, match="'fpzip' has no zarr codec, so references cannot point"):
        write_references(path, tmp_path / "refs.json")
    assert not (tmp_path / "refs.json").exists()
