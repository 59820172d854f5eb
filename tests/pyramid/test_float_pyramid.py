"""Pyramid levels keep level 0's codec: a float pyramid of a pcodec / kempressed volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core.test_directory import write_volume

from blockfs_tasks.core import Directory
from blockfs_tasks.pyramid import build_pyramid


def write(path: Path, data: np.ndarray, **codec: object) -> None:
    write_volume(path, data, (16, 16, 16), **codec)


@pytest.mark.parametrize("codec", [{"compression": "pcodec"}, {"compression": "kempressed"},
                                   {"compression": "fpzip", "bitround_keepbits": 12}], ids=str)
def test_levels_keep_level0s_codec_and_values(tmp_path: Path, codec: dict) -> None:
    data = np.random.default_rng(8).random((40, 36, 50)).astype(np.float32)
    write(tmp_path / "plain.blockfs", data)
    write(tmp_path / "float.blockfs", data, **codec)
    plain = build_pyramid(str(tmp_path / "plain.blockfs"), str(tmp_path / "plain"), max_levels=3, n_threads=1)
    made = build_pyramid(str(tmp_path / "float.blockfs"), str(tmp_path / "float"), max_levels=3, n_threads=1)
    level0 = Directory.open(tmp_path / "float.blockfs").spec.codec
    assert len(made.levels) == 3
    for i in range(1, 3):
        level, reference = made.open(i), plain.open(i)
        assert level.spec.codec == level0
        got, want = level[:, :, :], reference[:, :, :]
        if codec == {"compression": "pcodec"}:
            assert got.tobytes() == want.tobytes()  # lossless: the same pyramid as Blosc's
        else:  # each level is stored with the loss again: one epsilon (kempressed) or 2**-13 (data < 1) more
            bound = np.finfo(np.float32).eps if "bitround_keepbits" not in codec else 2.0**-13
            assert np.abs(got - want).max() <= (i + 1) * bound
