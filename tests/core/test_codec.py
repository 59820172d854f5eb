"""Block codecs: Blosc round trips for every dtype and compressor, settings checks, the checksum."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numcodecs import Blosc, blosc

from blockfs_tasks.core import BlockCodec, Compression, ConfigurationError, FormatError
from blockfs_tasks.core.codec import available_compressors, check_dtype, checksum, codec_from_dict
from blockfs_tasks.core.errors import UnsupportedCodecError

from .helpers import ALL_COMPRESSORS, ALL_DTYPES, compressor_param, random_block, same


@pytest.mark.parametrize("compression", [compressor_param(c) for c in ALL_COMPRESSORS])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_round_trip_every_dtype_and_compressor(dtype: str, compression: str) -> None:
    block = random_block((5, 7, 9), dtype, 1)
    codec = BlockCodec(compression, 3)
    frame = codec.encode(block)
    assert same(BlockCodec.decode(frame, np.dtype(dtype), (5, 7, 9)), block)


@pytest.mark.parametrize("compression", [compressor_param(c) for c in ALL_COMPRESSORS])
def test_frames_are_plain_blosc_readable_by_numcodecs(compression: str) -> None:
    """What the format stores is a Blosc1 frame: numcodecs decodes it with no settings."""
    block = random_block((8, 8, 8), "uint16", 2)
    frame = BlockCodec(compression, 9, shuffle=False).encode(block)
    assert np.frombuffer(Blosc().decode(frame), np.uint16).reshape(8, 8, 8).tobytes() == block.tobytes()
    # ... and a frame written by numcodecs (as the original blockfs did) decodes here.
    theirs = Blosc(cname=compression, clevel=5, shuffle=Blosc.SHUFFLE).encode(block)
    assert same(BlockCodec.decode(theirs, np.dtype("uint16"), (8, 8, 8)), block)


def test_compression_enum_and_names() -> None:
    assert BlockCodec(Compression.zstd).compression == "zstd"
    assert BlockCodec(Compression.lz4hc, 0).compression == "lz4hc"
    assert [c.name for c in Compression] == ["zstd", "blosclz", "lz4", "lz4hc", "zlib", "snappy"]
    # the original blockfs's values, kept
    assert (Compression.zstd.value, Compression.snappy.value) == (1, 6)


@pytest.mark.parametrize("name", ["gzip", "ZSTD", "", "lz5"])
def test_unknown_compression_name(name: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(name)) as e:
        BlockCodec(name)
    assert "zstd" in str(e.value)  # names what was expected
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("level", [-1, 10, 99, 2.5, "5", True, None])
def test_invalid_compression_level(level: object) -> None:
    with pytest.raises(ConfigurationError, match=r"\(0, 9\)"):
        BlockCodec("zstd", level)  # type: ignore[arg-type]  # invalid on purpose


def test_levels_zero_to_nine_accepted() -> None:
    block = random_block((4, 4, 4), "int32", 3)
    for level in range(10):
        codec = BlockCodec("lz4", np.int64(level))
        assert codec.level == level and type(codec.level) is int
        assert same(codec.decode(codec.encode(block), block.dtype, block.shape), block)


@pytest.mark.skipif("snappy" in blosc.list_compressors(), reason="this numcodecs has snappy")
def test_snappy_unavailable_is_a_clear_error() -> None:
    codec = BlockCodec("snappy")  # a valid name: volumes written elsewhere may use it
    with pytest.raises(ConfigurationError, match="snappy.*not available"):
        codec.encode(np.zeros((2, 2, 2), np.uint8))
    assert "snappy" not in available_compressors()


def test_decode_checks_the_frame_size() -> None:
    block = random_block((4, 4, 4), "uint16", 4)
    frame = BlockCodec().encode(block)
    with pytest.raises(FormatError, match="expected"):
        BlockCodec.decode(frame, np.dtype("uint16"), (4, 4, 5))  # wrong raw size
    with pytest.raises(FormatError):
        BlockCodec.decode(frame[:-3], np.dtype("uint16"), (4, 4, 4))  # cut short
    with pytest.raises(FormatError, match="too short"):
        BlockCodec.decode(frame[:10], np.dtype("uint16"), (4, 4, 4))


def test_checksum_is_crc32c() -> None:
    # The CRC-32C check value (RFC 3720 / iSCSI): crc32c(b"123456789") = 0xE3069283.
    assert checksum(b"123456789") == 0xE3069283
    assert checksum(b"") == 0


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_check_dtype_accepts_the_supported(dtype: str) -> None:
    assert check_dtype(dtype) == np.dtype(dtype)
    assert check_dtype(np.dtype(dtype).newbyteorder(">")).itemsize == np.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype", ["complex64", "bool", "float16", "U4", "O", "not-a-dtype", "V8"])
def test_check_dtype_rejects_the_rest(dtype: str) -> None:
    with pytest.raises(ConfigurationError, match="Expected"):
        check_dtype(dtype)


# ------------------------------------------------ format 2.1.0: codec id + parameters
@pytest.mark.parametrize(
    "codec", [BlockCodec(), BlockCodec("lz4", 0, False), BlockCodec("zlib", 9, True), BlockCodec("zstd", 5, 2)]
)
def test_codec_record_round_trip(codec: BlockCodec) -> None:
    record = codec.to_dict()
    assert record == {"id": "blosc", "cname": codec.compression, "clevel": codec.level, "shuffle": codec.shuffle}
    assert codec_from_dict(json.loads(json.dumps(record))) == codec


@pytest.mark.parametrize(
    "record, error, pattern",
    [
        ({"id": "zfp", "rate": 8}, UnsupportedCodecError, "unknown codec id 'zfp'"),
        ({"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 3}, UnsupportedCodecError, "shuffle 0 .* Got 3"),
        ({"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": True}, UnsupportedCodecError, "Got True"),
        (
            {"id": "blosc", "cname": "zstd", "clevel": 5, "blocksize": 0},
            UnsupportedCodecError,
            "unknown parameters \\['blocksize'\\]",
        ),
        ({"id": "blosc", "cname": "zz", "clevel": 5}, FormatError, "Expected a compression"),
        ({"id": "blosc", "cname": ["zstd"], "clevel": 5}, FormatError, "codec 'blosc'"),
        ({"id": "blosc", "cname": "zstd", "clevel": 12}, FormatError, "level"),
        ({"cname": "zstd"}, FormatError, 'string "id"'),
        ([1, 2], FormatError, "JSON object"),
    ],
)
def test_bad_codec_records(record: object, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        codec_from_dict(record)


def test_max_frame_size_bounds_real_frames() -> None:
    worst = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)  # incompressible
    for name in ("zstd", "lz4", "blosclz", "zlib"):
        assert len(BlockCodec(name, 9).encode(worst)) <= BlockCodec.max_frame_size(worst.nbytes)


def test_unknown_compression_lists_only_the_compressors_built_here() -> None:
    from numcodecs import blosc

    from blockfs_tasks.core.codec import BlockCodec
    from blockfs_tasks.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as e:
        BlockCodec("zzz")
    listed = str(e.value).split("[", 1)[1].split("]", 1)[0]
    assert sorted(n.strip(" '") for n in listed.split(",")) == sorted(blosc.list_compressors())


# ------------------------------------------------ Blosc bit shuffle (shuffle 2)
@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_bit_shuffle_frames_are_plain_blosc(dtype: str) -> None:
    block = random_block((6, 7, 9), dtype, 3)
    frame = BlockCodec("zstd", 5, 2).encode(block)
    assert frame[2] & 0x4  # the Blosc1 header's bit-shuffle flag
    assert same(BlockCodec.decode(frame, np.dtype(dtype), (6, 7, 9)), block)
    assert np.frombuffer(Blosc().decode(frame), dtype).reshape(6, 7, 9).tobytes() == block.tobytes()


@pytest.mark.parametrize("shuffle, expected", [(True, 1), (False, 0), (0, 0), (1, 1), (2, 2)])
def test_shuffle_values(shuffle: object, expected: int) -> None:
    assert BlockCodec("zstd", 5, shuffle).shuffle == expected  # type: ignore[arg-type]  # bools on purpose


@pytest.mark.parametrize("shuffle", [3, -1, "bit", None, 1.5])
def test_bad_shuffle_is_an_error(shuffle: object) -> None:
    with pytest.raises(ConfigurationError, match="shuffle 0 \\(none\\), 1 \\(byte\\) or 2 \\(bit\\)"):
        BlockCodec("zstd", 5, shuffle)  # type: ignore[arg-type]  # invalid on purpose
