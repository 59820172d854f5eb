"""The float codecs in the tools: blockfs-info shows codec, parameters and loss bound; blockfs-cp re-encodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core.test_directory import write_volume

from blockfs_tasks.cli import cp_main, info_main
from blockfs_tasks.core import Directory


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


# ------------------------------------------------------------------ blockfs-cp --compression
def test_cp_re_encodes_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a" / "v.blockfs"
    src.parent.mkdir()
    data = make_float(src, compression="fpzip")
    assert cp_main([str(src), str(tmp_path / "b"), "--compression", "pcodec", "--compression-level", "3",
                    "--silent"]) == 0
    dest = Path(capsys.readouterr().out.strip())
    assert dest == tmp_path / "b" / "v.blockfs"
    copy = Directory.open(dest)
    assert copy.spec.codec.to_dict() == {"id": "pcodec", "level": 3}
    assert copy[:, :, :].tobytes() == data.tobytes() and copy.grid == Directory.open(src).grid
    # and back to Blosc with bit shuffle, then BitRound: every codec decodes for the copy
    assert cp_main([str(dest), str(tmp_path / "c"), "--compression", "zstd", "--shuffle", "2", "--silent"]) == 0
    assert Directory.open(tmp_path / "c" / "v.blockfs")[:, :, :].tobytes() == data.tobytes()
    assert cp_main([str(dest), str(tmp_path / "d"), "--compression", "zstd", "--bitround-keepbits", "8",
                    "--silent"]) == 0
    rounded = Directory.open(tmp_path / "d" / "v.blockfs")[:, :, :]
    assert np.all(np.abs(rounded - data) <= 2.0**-9 * np.abs(data))


def test_cp_refuses_what_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a" / "v.blockfs"
    src.parent.mkdir()
    write_volume(src, np.arange(512, dtype=np.uint16).reshape(8, 8, 8), (4, 4, 4))
    assert cp_main([str(src), str(tmp_path / "b"), "--compression", "fpzip", "--silent"]) == 1
    assert "'fpzip' stores float32 and float64 volumes only. Got dtype uint16" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    assert cp_main([str(src), str(tmp_path / "b"), "--compression-level", "3"]) == 1
    assert "need --compression" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert cp_main([str(src), str(tmp_path / "c"), "--compression", "lz4", "--silent"]) == 0
    assert cp_main([str(src), str(tmp_path / "c"), "--compression", "zstd", "--silent"]) == 1
    assert "exists; remove it or choose another folder (nothing was written)" in capsys.readouterr().err
    assert Directory.open(tmp_path / "c" / "v.blockfs").compression == "lz4"


@pytest.mark.parametrize("compression", ["fpzip", "pcodec"])
def test_tiff_export_decodes_float_codecs(tmp_path: Path, compression: str) -> None:
    import tifffile

    from blockfs_tasks.export.tiff import export_tiff

    data = make_float(tmp_path / "v.blockfs", compression=compression)
    files = export_tiff(str(tmp_path / "v.blockfs"), str(tmp_path / "z%03d.tif"), n_threads=1)
    assert len(files) == data.shape[0]
    assert tifffile.imread(files[7]).tobytes() == data[7].tobytes()
