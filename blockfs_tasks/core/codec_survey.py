"""Codec survey: compression ratio and encode/decode speed of Blosc settings on real blocks.

Used by ``blockfs-tune`` (a user's own volume) and ``benchmarks/bench_codecs.py``
(the synthetic data kinds), so both measure the same way: every candidate
compresses the same blocks, one frame at a time on one thread (the writers
parallelise over blocks, not inside one), and speeds are MB of raw data per
second per core. What a volume would ingest or read at on ``n`` cores is
``n`` times that, an upper bound that holds while the codec is the bottleneck.

Candidates include bit shuffle (Blosc ``shuffle=2``) whether or not the
volume format can store it yet: the survey measures, it does not write.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import imagecodecs
import numpy as np

from .errors import ConfigurationError

#: Blosc shuffle filters by number, as Blosc and the codec record name them.
SHUFFLES = {0: "none", 1: "byte", 2: "bit"}


@dataclass(frozen=True)
class Candidate:
    """One Blosc setting: compressor, level 1-9, shuffle (0 none, 1 byte, 2 bit)."""

    cname: str
    clevel: int
    shuffle: int = 1

    def __post_init__(self) -> None:
        if self.shuffle not in SHUFFLES:
            raise ConfigurationError(f"Expected shuffle 0, 1 or 2. Got {self.shuffle!r} instead.")
        if not 0 <= self.clevel <= 9:
            raise ConfigurationError(f"Expected a level from the inclusive range (0, 9). Got {self.clevel} instead.")

    @property
    def label(self) -> str:
        """e.g. ``zstd-2 byte``."""
        return f"{self.cname}-{self.clevel} {SHUFFLES[self.shuffle]}"


@dataclass(frozen=True)
class Measurement:
    """How one candidate did on a set of blocks (speeds per core, one thread)."""

    candidate: Candidate
    n_blocks: int
    raw_bytes: int
    stored_bytes: int
    encode_s: float
    decode_s: float
    blocksize: int  # the Blosc internal block size chosen for the first block (bytes)

    @property
    def ratio(self) -> float:
        """Raw bytes over stored bytes."""
        return self.raw_bytes / max(1, self.stored_bytes)

    @property
    def encode_mbps(self) -> float:
        """Raw MB (10^6 bytes) compressed per second on one core."""
        return self.raw_bytes / 1e6 / max(self.encode_s, 1e-9)

    @property
    def decode_mbps(self) -> float:
        """Raw MB (10^6 bytes) decompressed per second on one core."""
        return self.raw_bytes / 1e6 / max(self.decode_s, 1e-9)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record."""
        c = self.candidate
        return {
            "cname": c.cname, "clevel": c.clevel, "shuffle": SHUFFLES[c.shuffle], "n_blocks": self.n_blocks,
            "raw_bytes": self.raw_bytes, "stored_bytes": self.stored_bytes, "ratio": round(self.ratio, 4),
            "encode_mbps_per_core": round(self.encode_mbps, 1), "decode_mbps_per_core": round(self.decode_mbps, 1),
            "blosc_blocksize": self.blocksize,
        }


def candidates(
    cnames: Iterable[str] = ("zstd", "lz4", "lz4hc"),
    levels: Iterable[int] = range(1, 10),
    shuffles: Iterable[int] = (1, 2),
) -> list[Candidate]:
    """Every combination of ``cnames`` x ``levels`` x ``shuffles``, skipping compressors not built here."""
    from .codec import available_compressors

    built = set(available_compressors())
    missing = [c for c in cnames if c not in built]
    if missing:
        raise ConfigurationError(f"Blosc here has no {missing}; it has {sorted(built)}")
    return [Candidate(c, lvl, s) for c in cnames for lvl in levels for s in shuffles]


def blosc_blocksize(frame: bytes) -> int:
    """The internal block size recorded in a Blosc1 frame's header (bytes 8-11)."""
    return int.from_bytes(frame[8:12], "little")


def encode(candidate: Candidate, block: np.ndarray, numthreads: int = 1) -> bytes:
    """One Blosc1 frame of ``block`` with ``candidate``'s settings."""
    block = np.ascontiguousarray(block)
    # The array itself, not a byte view: imagecodecs takes the type size from the buffer's items.
    return bytes(imagecodecs.blosc_encode(
        block,  # type: ignore[arg-type]  # the stub lists buffers only; any C-contiguous array works
        level=candidate.clevel, compressor=candidate.cname, shuffle=candidate.shuffle,
        typesize=block.dtype.itemsize, numthreads=numthreads,
    ))


def measure(candidate: Candidate, blocks: Sequence[np.ndarray], repeats: int = 1) -> Measurement:
    """Compress and decompress every block ``repeats`` times; keep the fastest pass of each.

    Every frame is decoded and compared with its block, so a setting that
    does not round-trip raises instead of reporting a speed.
    """
    if not blocks:
        raise ConfigurationError("no blocks to measure (the volume has none written?)")
    contiguous = [np.ascontiguousarray(b) for b in blocks]
    encode_s = decode_s = float("inf")
    frames: list[bytes] = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        frames = [encode(candidate, b) for b in contiguous]
        encode_s = min(encode_s, time.perf_counter() - t0)
    outs = [np.empty_like(b) for b in contiguous]
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for frame, out in zip(frames, outs, strict=True):
            imagecodecs.blosc_decode(  # the stub lists bytearray/memoryview; a flat uint8 array works
                frame, numthreads=1, out=out.reshape(-1).view(np.uint8),  # type: ignore[arg-type]
            )
        decode_s = min(decode_s, time.perf_counter() - t0)
    for block, out in zip(contiguous, outs, strict=True):
        if not np.array_equal(block, out):
            raise ConfigurationError(f"{candidate.label}: a block did not round-trip")
    return Measurement(
        candidate, len(contiguous), sum(b.nbytes for b in contiguous), sum(len(f) for f in frames),
        encode_s, decode_s, blosc_blocksize(frames[0]),
    )


def survey(cands: Sequence[Candidate], blocks: Sequence[np.ndarray], repeats: int = 1) -> list[Measurement]:
    """:func:`measure` of every candidate on the same blocks."""
    return [measure(c, blocks, repeats) for c in cands]


def implied_speeds(m: Measurement, cores: int) -> tuple[float, float]:
    """(ingest, full read) MB/s on ``cores`` cores if the codec is the bottleneck: cores x per-core speed."""
    return cores * m.encode_mbps, cores * m.decode_mbps


def sample_origins(origins: Sequence[tuple[int, int, int]], n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``n`` origins drawn without replacement (all of them when there are fewer), in their order."""
    if len(origins) <= n:
        return list(origins)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(origins), size=n, replace=False))
    return [origins[int(i)] for i in picked]
