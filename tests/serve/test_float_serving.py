"""Float volumes: blockfs-serve sends raw whatever the stored codec (tensorstore reads it exactly);
blockfs-precomputed --encoding fpzip / kempressed writes what cloud-volume reads (exactly / within one epsilon)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import precomputed_main
from blockfs_tasks.core import Directory
from blockfs_tasks.serve import open_precomputed
from blockfs_tasks.serve.server import BackgroundServer
from blockfs_tasks.serve.static import write_static_precomputed

from .conftest import write_volume

cloudvolume = pytest.importorskip("cloudvolume", reason="cloud-volume is not installed (pip install cloud-volume)")
tensorstore = pytest.importorskip("tensorstore")

SHAPE_ZYX = (21, 35, 42)  # edge blocks on every axis at 16 x 16 x 8 blocks
ABSENT = (16, 0, 8)


def sample(dtype: str) -> np.ndarray:
    """Values in [0, 1] with the specials kempressed can keep (0, 1, -0.0 aside) and denormals."""
    rng = np.random.default_rng(9)
    data = rng.random(SHAPE_ZYX).astype(dtype)
    data[0, 0, :4] = [0.0, 1.0, np.finfo(dtype).smallest_subnormal, np.finfo(dtype).eps]
    return data


def special(dtype: str) -> np.ndarray:
    """NaN, -0.0, +-inf and denormals among random normals: for the lossless codecs."""
    data = sample(dtype) * 1e3 - 500
    data[1, 1, :6] = [np.nan, -0.0, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).max]
    return data


def expected(data: np.ndarray) -> np.ndarray:
    out = data.copy()
    x, y, z = ABSENT
    out[z : z + 8, y : y + 16, x : x + 16] = 0
    return out


def cv_read(url: str) -> np.ndarray:
    vol = cloudvolume.CloudVolume(url, mip=0, fill_missing=True, progress=False, cache=False, parallel=1)
    return np.asarray(vol[:, :, :])[..., 0].transpose(2, 1, 0)


@pytest.mark.parametrize("dtype", ["float32"])  # precomputed has no float64 (Neuroglancer's data types)
@pytest.mark.parametrize("stored", ["fpzip", "pcodec", "zstd"])
def test_cloudvolume_reads_an_fpzip_export_exactly(tmp_path: Path, stored: str, dtype: str) -> None:
    data = special(dtype)
    path = tmp_path / "v.blockfs"
    _write(path, data, stored)
    out = tmp_path / "static"
    info = write_static_precomputed(str(path), str(out), encoding="fpzip", resolution_nm_xyz=(4, 4, 40))
    assert info["scales"][0]["encoding"] == "fpzip"
    got = cv_read(f"file://{out}")
    assert got.dtype == np.dtype(dtype) and got.tobytes() == expected(data).tobytes()
    if stored == "fpzip":  # frames were copied, not re-encoded
        d = Directory.open(path)
        assert (out / info["scales"][0]["key"] / "0-16_0-16_0-8").read_bytes() == d.read_frame(0, 0, 0)


def _write(path: Path, data: np.ndarray, compression: str) -> None:
    write_volume(path, data, (16, 16, 8), {ABSENT}, compression)


@pytest.mark.parametrize("dtype", ["float32"])
@pytest.mark.parametrize("stored", ["kempressed", "pcodec"])
def test_cloudvolume_reads_a_kempressed_export(tmp_path: Path, stored: str, dtype: str) -> None:
    """cloud-volume's decoder swaps (x, y, 1, z) back: single-channel chunks read right, to one epsilon."""
    data = sample(dtype)
    path = tmp_path / "v.blockfs"
    _write(path, data, stored)
    out = tmp_path / "static"
    assert precomputed_main([str(path), str(out), "--encoding", "kempressed", "--silent"]) == 0
    got = cv_read(f"file://{out}")
    assert got.dtype == np.dtype(dtype)
    assert np.abs(got.astype(np.float64) - expected(data)).max() <= np.finfo(dtype).eps


def test_encodings_an_integer_volume_cannot_have_fail_before_writing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.blockfs"
    write_volume(path, np.ones((8, 8, 8), np.uint16), (8, 8, 8), set())
    assert precomputed_main([str(path), str(tmp_path / "out"), "--encoding", "fpzip", "--silent"]) == 1
    assert "'fpzip' stores float32 and float64 volumes only. Got dtype uint16" in capsys.readouterr().err
    assert not (tmp_path / "out" / "info").exists()


def test_kempressed_export_refuses_data_outside_zero_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.blockfs"
    _write(path, special("float32"), "pcodec")
    assert precomputed_main([str(path), str(tmp_path / "out"), "--encoding", "kempressed", "--silent"]) == 1
    assert "'kempressed' stores data in [0, 1] only" in capsys.readouterr().err
    assert not (tmp_path / "out" / "info").exists()


@pytest.mark.parametrize("stored", ["fpzip", "pcodec", "kempressed"])
def test_tensorstore_reads_a_float_volume_from_the_server_exactly(tmp_path: Path, stored: str) -> None:
    data = sample("float32") if stored == "kempressed" else special("float32")
    path = tmp_path / "v.blockfs"
    _write(path, data, stored)
    want = Directory.open(path)[:, :, :]  # what the core reads (kempressed: within one epsilon of data)
    with BackgroundServer(open_precomputed(str(path), resolution_nm_xyz=(4, 4, 40))) as server:
        store = tensorstore.open(
            {"driver": "neuroglancer_precomputed", "kvstore": server.base_url + "/", "scale_index": 0}
        ).result()
        assert store.dtype.name == "float32"
        got = store.read().result()[..., 0].transpose(2, 1, 0)
    assert got.tobytes() == want.tobytes()
    if stored != "kempressed":
        assert got.tobytes() == expected(data).tobytes()
