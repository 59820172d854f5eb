"""The codec survey behind blockfs-tune and bench_codecs: round trips, ratios, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from blockfs_tasks.core.codec import BlockCodec
from blockfs_tasks.core.codec_survey import Candidate, candidates, implied_speeds, measure, sample_origins
from blockfs_tasks.core.errors import ConfigurationError


def _blocks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(0, 3, (4, 32, 32, 32)), axis=3).astype(np.uint16)
    return list(smooth)


def test_measure_counts_the_frames_the_volume_codec_would_store() -> None:
    blocks = _blocks()
    m = measure(Candidate("zstd", 5, 1), blocks)
    stored = sum(len(BlockCodec("zstd", 5, True).encode(b)) for b in blocks)
    assert m.stored_bytes == stored
    assert m.raw_bytes == sum(b.nbytes for b in blocks)
    assert m.ratio == pytest.approx(m.raw_bytes / stored)
    assert m.encode_mbps > 0 and m.decode_mbps > 0
    assert m.blocksize > 0


def test_bit_shuffle_round_trips_and_differs_from_byte_shuffle() -> None:
    blocks = _blocks()
    byte, bit = measure(Candidate("zstd", 2, 1), blocks), measure(Candidate("zstd", 2, 2), blocks)
    assert byte.stored_bytes != bit.stored_bytes


def test_candidates_and_bad_settings() -> None:
    assert len(candidates(("zstd", "lz4"), (1, 2, 3), (1, 2))) == 12
    with pytest.raises(ConfigurationError, match="shuffle"):
        Candidate("zstd", 2, 3)
    with pytest.raises(ConfigurationError, match="no \\['nosuch'\\]"):
        candidates(("nosuch",))
    with pytest.raises(ConfigurationError, match="no blocks"):
        measure(Candidate("zstd", 2), [])


def test_sampling_is_deterministic_and_bounded() -> None:
    origins = [(x, 0, 0) for x in range(0, 6400, 64)]
    a = sample_origins(origins, 10, seed=3)
    assert a == sample_origins(origins, 10, seed=3) and len(set(a)) == 10 and a == sorted(a)
    assert sample_origins(origins[:5], 10) == origins[:5]
    m = measure(Candidate("lz4", 1), _blocks())
    assert implied_speeds(m, 4) == (4 * m.encode_mbps, 4 * m.decode_mbps)
