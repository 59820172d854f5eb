"""The float codecs in the tools: blockfs-info shows codec, parameters and loss bound; blockfs-cp re-encodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core.test_directory import write_volume

from blockfs_tasks.cli import info_main


def make_float(path: Path, **codec: object) -> np.ndarray:
    """A 20 x 18 x 13 (z, y, x) float32 volume in 8-voxel blocks, values in [0, 1)."""
    data = np.random.default_rng(7).random((20, 18, 13)).astype(np.float32)
    write_volume(path, data, (8, 8, 8), **codec)
    return data


@pytest.mark.parametrize(
    "codec, record, bound",
    [
        ({"compression": "pcodec"}, {"id": "pcodec", "level": 8}, "lossless"),
        ({"compression": "kempressed"}, {"id": "kempressed", "loss": {"max_abs_error_eps": 1}},
         "|error| <= 1.19e-07 (1 machine epsilon of float32)"),
        ({"compression": "zstd", "shuffle": 2, "bitround_keepbits": 9},
         {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2, "bitround_keepbits": 9,
          "loss": {"max_rel_error": 2.0**-10}},
         "|error| <= 0.000977 * max(|value|, 1.18e-38) (BitRound to 9 mantissa bits)"),
    ],
)
def test_info_shows_codec_parameters_and_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: dict, record: dict, bound: str
) -> None:
    path = tmp_path / "v.blockfs"
    make_float(path, **codec)
    assert info_main([str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["codec"], info["loss_bound"], info["compression"]) == (record, bound, codec["compression"])
    assert info_main([str(path)]) == 0
    text = capsys.readouterr().out
    assert f"loss_bound         {bound}" in text and json.dumps(record["id"])[1:-1] in text
