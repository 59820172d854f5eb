"""Float codecs (fpzip, pcodec, kempressed) and BitRound: exact round trips, bounds, records, refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numcodecs import Blosc

from blockfs_tasks.core import ConfigurationError, Directory, FormatError
from blockfs_tasks.core.codec import codec_from_dict, make_codec
from blockfs_tasks.core.codecs.bitround import bitround
from blockfs_tasks.core.errors import ChecksumError, MissingDependencyError, UnsupportedCodecError

from .test_directory import write_volume

LOSSLESS = ("fpzip", "pcodec")
FLOATS = ("float32", "float64")
_F32_HALF_MAX = float(np.float32(1.7e38))


def special_floats(shape: tuple[int, int, int], dtype: str, seed: int) -> np.ndarray:
    """Random normals, every special value (NaN with payloads, -0.0, +-inf, denormals, extremes) mixed in."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    data = rng.normal(0, 1e3, shape).astype(dtype)
    specials = np.array(
        [np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, info.smallest_subnormal, -info.smallest_subnormal,
         info.smallest_normal / 3, info.max, info.min, info.eps, 1.0, -1.0], dtype)
    flat = data.reshape(-1)
    where = rng.choice(flat.size, size=flat.size // 4, replace=False)
    flat[where] = rng.choice(specials, size=where.size)
    ints = flat.view(f"u{np.dtype(dtype).itemsize}")
    nan_payload = np.array(0x7F800001 if dtype == "float32" else 0x7FF0000000000001, ints.dtype)
    ints[where[:5]] = nan_payload + np.arange(5, dtype=ints.dtype)  # signalling NaNs with payloads
    return data


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_volume_round_trip_is_bit_exact(tmp_path: Path, name: str, dtype: str) -> None:
    """Every bit back, edge blocks included (37 x 21 x 19 in 8-voxel blocks), through the Directory."""
    data = special_floats((19, 21, 37), dtype, 1)
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (8, 8, 8), compression=name)
    d = Directory.open(path)
    assert d.compression == name and d.spec.codec.to_dict()["id"] == name
    assert json.loads(json.dumps(d.spec.codec.to_dict())) == d.spec.codec.to_dict()
    assert bits(d[:, :, :]) == bits(data)
    assert bits(d.read_block(32, 16, 16)) == bits(data[16:, 16:, 32:])  # a corner edge block


@pytest.mark.parametrize("dtype", FLOATS)
def test_kempressed_loses_at_most_one_epsilon(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(2)
    data = rng.random((11, 13, 17)).astype(dtype)
    data[0, 0, :4] = [0.0, 1.0, -0.0, np.finfo(dtype).smallest_subnormal]
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (8, 8, 4), compression="kempressed")
    d = Directory.open(path)
    assert d.spec.codec.to_dict() == {"id": "kempressed", "loss": {"max_abs_error_eps": 1}}
    back = d[:, :, :]
    assert back.dtype == np.dtype(dtype)
    assert np.abs(back.astype(np.float64) - data).max() <= np.finfo(dtype).eps
    assert back[0, 0, 0] == 0.0 and back[0, 0, 1] == 1.0


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan, np.inf])
def test_kempressed_refuses_data_outside_zero_one(tmp_path: Path, bad: float) -> None:
    data = np.full((4, 4, 4), 0.5, np.float32)
    data[1, 2, 3] = bad
    d = Directory(4, 4, 4, np.float32, tmp_path / "v.blockfs", 4, 4, 4, compression="kempressed")
    d.create()
    with pytest.raises(ConfigurationError, match=r"'kempressed' stores data in \[0, 1\] only; .* 1 values"):
        d.write_block(data, 0, 0, 0)
    d.close()
    assert not Directory.open(tmp_path / "v.blockfs").has_block(0, 0, 0)


@pytest.mark.parametrize("keepbits", [None, 9])
@pytest.mark.parametrize("name", ["fpzip", "pcodec", "kempressed"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint64"])
def test_float_codecs_refuse_integer_dtypes(tmp_path: Path, name: str, dtype: str, keepbits: int | None) -> None:
    with pytest.raises(ConfigurationError, match=f"stores float32 and float64 volumes only. Got dtype {dtype}"):
        Directory(8, 8, 8, dtype, tmp_path / "v.blockfs", compression=name, bitround_keepbits=keepbits)


def test_bitround_refuses_integers_before_blosc_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'bitround' stores float32 and float64 volumes only"):
        Directory(8, 8, 8, "uint16", tmp_path / "v.blockfs", bitround_keepbits=8)
    with pytest.raises(ConfigurationError, match="bitround_keepbits from 0 to 23 for float32. Got 30"):
        Directory(8, 8, 8, "float32", tmp_path / "v.blockfs", bitround_keepbits=30)


@pytest.mark.parametrize(
    "codec",
    [make_codec("fpzip"), make_codec("pcodec"), make_codec("pcodec", 3), make_codec("kempressed"),
     make_codec("zstd", 5, 2, 10), make_codec("pcodec", None, 1, 0), make_codec("kempressed", None, 1, 20)],
    ids=str,
)
def test_codec_records_round_trip(codec: object) -> None:
    record = codec.to_dict()  # type: ignore[attr-defined]  # any Codec
    assert codec_from_dict(json.loads(json.dumps(record))) == codec


def test_lossy_records_carry_their_bound() -> None:
    assert make_codec("zstd", 5, 2, 10).to_dict() == {
        "id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2,
        "bitround_keepbits": 10, "loss": {"max_rel_error": 2.0 ** -11},
    }
    assert make_codec("kempressed", None, 1, 4).to_dict()["loss"] == {"max_abs_error_eps": 1, "max_rel_error": 2**-5}
    assert make_codec("fpzip").loss == {} and "loss" not in make_codec("pcodec").to_dict()


@pytest.mark.parametrize(
    "record, error, pattern",
    [
        ({"id": "zfp", "mode": "reversible"}, UnsupportedCodecError, "unknown codec id 'zfp'"),
        ({"id": "fpzip", "precision": 20}, UnsupportedCodecError, r"'fpzip' with unknown parameters \['precision'\]"),
        ({"id": "pcodec", "level": 13}, FormatError, "pcodec level"),
        ({"id": "kempressed"}, FormatError, "the loss is None, its parameters give"),
        ({"id": "fpzip", "loss": {"max_rel_error": 0.5}}, FormatError, "the record says the loss"),
        ({"id": "pcodec", "bitround_keepbits": 4, "loss": {"max_rel_error": 0.5}}, FormatError, "the record says"),
        ({"id": "pcodec", "bitround_keepbits": 99, "loss": {}}, FormatError, "bitround_keepbits"),
    ],
)
def test_bad_float_codec_records(record: object, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        codec_from_dict(record)


@pytest.mark.parametrize("name", ["fpzip", "pcodec", "kempressed"])
def test_frames_of_another_shape_or_dtype_are_format_errors(name: str) -> None:
    codec = make_codec(name)
    block = np.random.default_rng(3).random((4, 5, 6)).astype(np.float32)
    frame = codec.encode(block)
    with pytest.raises(FormatError):
        codec.decode(frame, np.dtype(np.float32), (4, 5, 7))
    with pytest.raises(FormatError):
        codec.decode(frame, np.dtype(np.float64), (4, 5, 6))


def test_a_truncated_pcodec_frame_is_a_format_error() -> None:
    codec = make_codec("pcodec")
    frame = codec.encode(np.random.default_rng(3).random((4, 5, 6)).astype(np.float32))
    with pytest.raises(FormatError, match="pcodec"):
        codec.decode(frame[: len(frame) // 2], np.dtype(np.float32), (4, 5, 6))


@pytest.mark.parametrize("name", ["fpzip", "kempressed"])
def test_a_corrupt_fpzip_frame_never_reaches_fpzip(tmp_path: Path, name: str) -> None:
    """fpzip's decoder takes no length (it reads past a truncated frame): the CRC-32C is checked first."""
    data = np.random.default_rng(6).random((8, 8, 8)).astype(np.float32)
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (8, 8, 8), compression=name)
    block_file = Path(Directory.open(path).block_filenames[0])
    raw = bytearray(block_file.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    block_file.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        Directory.open(path)[:, :, :]


def test_a_missing_float_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fpzip", None)  # what `import fpzip` does when it is not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'blockfs_tasks\[float\]'"):
        make_codec("fpzip").encode(np.zeros((2, 2, 2), np.float32))


# ------------------------------------------------------------------ BitRound
@settings(max_examples=60, deadline=None)
@given(
    keepbits=st.integers(0, 23),
    data=hnp.arrays(np.float32, (3, 4, 5), elements=st.floats(-_F32_HALF_MAX, _F32_HALF_MAX, width=32)),
)
def test_bitround_error_within_its_bound_float32(keepbits: int, data: np.ndarray) -> None:
    codec = make_codec("zstd", 5, 2, keepbits)
    back = codec.decode(codec.encode(data), np.dtype(np.float32), data.shape)
    bound = codec.loss["max_rel_error"]
    err = np.abs(back.astype(np.float64) - data.astype(np.float64))
    scale = np.maximum(np.abs(data.astype(np.float64)), np.finfo(np.float32).tiny)  # subnormals: of the smallest normal
    assert np.all(err <= bound * scale)


@settings(max_examples=30, deadline=None)
@given(keepbits=st.integers(0, 52), values=st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=40))
def test_bitround_error_within_its_bound_float64(keepbits: int, values: list[float]) -> None:
    data = np.array(values, np.float64)
    rounded = bitround(data, keepbits)
    scale = np.maximum(np.abs(data), np.finfo(np.float64).tiny)
    assert np.all(np.abs(rounded - data) <= 2.0 ** -(keepbits + 1) * scale)


def test_bitround_keeps_non_finite_values_and_never_overflows() -> None:
    info = np.finfo(np.float32)
    data = np.array([np.nan, np.inf, -np.inf, info.max, info.min, -0.0], np.float32)
    ints = data.view(np.uint32)
    ints[0] = 0x7F800001  # a NaN whose payload a plain rounding would turn into inf
    rounded = bitround(data, 3)
    assert bits(rounded[:3]) == bits(data[:3])
    assert np.isfinite(rounded[3:]).all() and rounded[3] > 0 > rounded[4]
    assert np.signbit(rounded[5])


def test_bitround_volume_is_plain_blosc_and_smaller(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = (rng.random((16, 16, 16)) * 100).astype(np.float32)
    write_volume(tmp_path / "exact.blockfs", data, (16, 16, 16))
    write_volume(tmp_path / "round.blockfs", data, (16, 16, 16), bitround_keepbits=7)
    exact, rounded = Directory.open(tmp_path / "exact.blockfs"), Directory.open(tmp_path / "round.blockfs")
    assert rounded.compression == "zstd" and rounded.spec.codec.to_dict()["bitround_keepbits"] == 7
    assert int(rounded.index["size"].sum()) < int(exact.index["size"].sum()) * 0.7
    entry = rounded.index[0]
    with open(rounded.block_filenames[int(entry["file"]) - 1], "rb") as f:
        f.seek(int(entry["offset"]))
        frame = f.read(int(entry["size"]))
    back = rounded[:, :, :]
    assert np.all(np.abs(back - data) <= 2.0 ** -8 * np.abs(data))
    # the frame is plain Blosc: numcodecs reads it with no settings
    assert np.frombuffer(Blosc().decode(frame), np.float32).tobytes() == back.tobytes()
