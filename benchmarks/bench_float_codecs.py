"""Float codecs side by side on float32 volumes (run by hand): ratio, encode and decode MB/s per core.

Two deterministic synthetic float32 volumes, cut into 64^3 blocks as blockfs
stores them:

* **affinity**: like a boundary-detection network's output: ~1 inside cells
  (Voronoi cells of anisotropic size: 8 nm x 8 nm x 40 nm voxels), dropping to
  ~0 over a few voxels at cell borders, plus Gaussian noise (sigma 0.02),
  clipped to [0, 1];
* **intensity**: blockfs' synthetic light-sheet volume as float32 (cells,
  background, noise; values in ADU, not in [0, 1]).

Each codec encodes and decodes every block from one thread, timed by
``time.process_time`` (CPU seconds of this process, Blosc's own decoding
threads included, so the machine's other load does not count; wall time is
given too); MB/s are raw megabytes (10^6) per CPU second, i.e. per core. The blockfs
codecs are the ones volumes use (``make_codec``); zfp (reversible) comes from
zfpy directly. Every lossless codec is checked bit for bit, lossy ones against
their bound. Targets (issue 13): the lossless float codec chosen as default
stores smaller than Blosc zstd-5 + byte shuffle and decodes >= 5x faster than
fpzip.

    python benchmarks/bench_float_codecs.py [--shape 128 256 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blockfs_tasks.core.codec import make_codec

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 64
MB = 1e6


def affinity_volume(shape_zyx: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """~1 inside anisotropic Voronoi cells, a sigmoid drop to ~0 at their borders, noise; float32 in [0, 1]."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    voxel_nm = np.array([40.0, 8.0, 8.0])  # z, y, x: anisotropic, like serial-section EM
    extent_nm = np.array(shape_zyx) * voxel_nm
    n_cells = max(8, int(np.prod(extent_nm) / (1200.0**3)))  # cells ~1.2 um across
    tree = cKDTree(rng.random((n_cells, 3)) * extent_nm)
    out = np.empty(shape_zyx, np.float32)
    yy, xx = np.meshgrid(np.arange(shape_zyx[1]), np.arange(shape_zyx[2]), indexing="ij")
    for z in range(shape_zyx[0]):  # one plane at a time: bounded memory
        points = np.stack([np.full(yy.size, z), yy.ravel(), xx.ravel()], axis=1) * voxel_nm
        d, _ = tree.query(points, k=2)
        border_nm = (d[:, 1] - d[:, 0]) / 2  # distance to the bisector of the two nearest cells
        aff = 1.0 / (1.0 + np.exp(-(border_nm - 24.0) / 8.0))  # ~0 on the border, ~1 a few voxels in
        out[z] = (aff + rng.normal(0, 0.02, aff.size)).clip(0, 1).reshape(yy.shape)
    return out


def intensity_volume(shape_zyx: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """blockfs' synthetic light-sheet volume, float32."""
    from blockfs_tasks.ingest.synthetic import SyntheticVolume

    return SyntheticVolume(shape_zyx, dtype="float32", seed=seed).slab(0, shape_zyx[0])


def blocks_of(volume: np.ndarray) -> list[np.ndarray]:
    nz, ny, nx = volume.shape
    return [
        np.ascontiguousarray(volume[z : z + BLOCK, y : y + BLOCK, x : x + BLOCK])
        for z in range(0, nz, BLOCK) for y in range(0, ny, BLOCK) for x in range(0, nx, BLOCK)
    ]


@dataclass
class Peer:
    """A codec under test: encode(block) -> bytes, decode(bytes, block) -> array, and what it loses."""

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes, np.ndarray], np.ndarray]
    lossless: bool
    bound: str  # the loss bound, in words
    applies: Callable[[np.ndarray], bool] = lambda v: True


def blockfs_peer(name: str, bound: str = "lossless", applies: Callable[[np.ndarray], bool] = lambda v: True,
                 **codec: Any) -> Peer:
    c = make_codec(**codec)
    return Peer(name, c.encode, lambda f, b: c.decode(f, b.dtype, b.shape), not c.loss, bound, applies)


def zfp_peer() -> Peer:
    import zfpy

    return Peer("zfp reversible (zfpy 1.0.1)", lambda b: zfpy.compress_numpy(b), lambda f, b: zfpy.decompress_numpy(f),
                True, "lossless")


def in_unit_interval(v: np.ndarray) -> bool:
    return bool(((v >= 0) & (v <= 1)).all())


def peers() -> list[Peer]:
    return [
        blockfs_peer("Blosc zstd-5 + byte shuffle", compression="zstd", level=5, shuffle=1),
        blockfs_peer("Blosc zstd-5 + bit shuffle", compression="zstd", level=5, shuffle=2),
        blockfs_peer("Blosc lz4-5 + bit shuffle", compression="lz4", level=5, shuffle=2),
        blockfs_peer("fpzip", compression="fpzip"),
        blockfs_peer("kempressed", "<= 1 eps (1.19e-7) absolute", in_unit_interval, compression="kempressed"),
        blockfs_peer("pcodec level 4", compression="pcodec", level=4),
        blockfs_peer("pcodec level 8 (default)", compression="pcodec", level=8),
        zfp_peer(),
        blockfs_peer("BitRound 8 bits + Blosc zstd-5 + bit shuffle", "relative <= 2^-9",
                     compression="zstd", level=5, shuffle=2, bitround_keepbits=8),
        blockfs_peer("BitRound 8 bits + pcodec 8", "relative <= 2^-9",
                     compression="pcodec", level=8, bitround_keepbits=8),
    ]


def measure(peer: Peer, blocks: list[np.ndarray], repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` CPU times for encoding and decoding every block; the ratio; the check."""
    raw = sum(b.nbytes for b in blocks)
    enc_cpu, dec_cpu, enc_wall, dec_wall = [], [], [], []
    frames: list[bytes] = []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        frames = [peer.encode(b) for b in blocks]
        enc_cpu.append(time.process_time() - c0)
        enc_wall.append(time.perf_counter() - w0)
        w0, c0 = time.perf_counter(), time.process_time()
        decoded = [peer.decode(f, b) for f, b in zip(frames, blocks, strict=True)]
        dec_cpu.append(time.process_time() - c0)
        dec_wall.append(time.perf_counter() - w0)
    stored = sum(len(f) for f in frames)
    max_abs = max(float(np.max(np.abs(d.astype(np.float64) - b))) for d, b in zip(decoded, blocks, strict=True))
    exact = all(np.asarray(d).reshape(b.shape).tobytes() == b.tobytes() for d, b in zip(decoded, blocks, strict=True))
    if peer.lossless and not exact:
        raise AssertionError(f"{peer.name} is not lossless here")
    return {
        "codec": peer.name,
        "stored_bytes": stored,
        "ratio": raw / stored,
        "stored_percent": 100.0 * stored / raw,
        "encode_mb_s_per_core": raw / MB / min(enc_cpu),
        "decode_mb_s_per_core": raw / MB / min(dec_cpu),
        "encode_wall_s": min(enc_wall),
        "decode_wall_s": min(dec_wall),
        "bit_exact": exact,
        "max_abs_error": max_abs,
        "loss_bound": peer.bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "float_codecs"), help="Path without extension.")
    args = parser.parse_args()
    shape = tuple(args.shape)
    load_start = os.getloadavg()
    volumes = {"affinity": affinity_volume(shape), "intensity": intensity_volume(shape)}
    results: dict[str, list[dict[str, Any]]] = {}
    for name, volume in volumes.items():
        blocks = blocks_of(volume)
        results[name] = []
        for peer in peers():
            if not peer.applies(volume):
                results[name].append({"codec": peer.name, "skipped": "data outside [0, 1]"})
                continue
            results[name].append(measure(peer, blocks, args.repeat))
            print(name, json.dumps(results[name][-1]))
    load_end = os.getloadavg()
    facts = {
        "shape_zyx": list(shape), "block": BLOCK, "repeat": args.repeat,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "load average at start (1/5/15 min)": [round(x, 2) for x in load_start],
        "load average at end (1/5/15 min)": [round(x, 2) for x in load_end],
        "note": "2 cores shared with 4 other engineers' jobs; MB/s are per CPU second of this process "
                "(process_time: Blosc decodes in its own threads), so other load inflates wall time, less so CPU time",
    }
    targets = check_targets(results)
    Path(args.out + ".json").write_text(json.dumps({"facts": facts, "results": results, "targets": targets},
                                                   indent=1))
    Path(args.out + ".md").write_text(markdown(facts, results, targets))
    print(Path(args.out + ".md").read_text())


def check_targets(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Smaller than Blosc zstd-5 + shuffle, and decoding >= 5x faster than fpzip, per volume (pcodec 8)."""
    out: dict[str, Any] = {}
    for name, rows in results.items():
        by = {r["codec"]: r for r in rows if "ratio" in r}
        default, blosc, fpzip = by["pcodec level 8 (default)"], by["Blosc zstd-5 + byte shuffle"], by["fpzip"]
        out[name] = {
            "pcodec_vs_blosc_size": default["stored_bytes"] / blosc["stored_bytes"],
            "smaller_than_blosc_zstd5_shuffle": default["stored_bytes"] < blosc["stored_bytes"],
            "pcodec_decode_vs_fpzip": default["decode_mb_s_per_core"] / fpzip["decode_mb_s_per_core"],
            "decodes_5x_faster_than_fpzip": default["decode_mb_s_per_core"] >= 5 * fpzip["decode_mb_s_per_core"],
        }
    return out


def markdown(facts: dict[str, Any], results: dict[str, list[dict[str, Any]]], targets: dict[str, Any]) -> str:
    lines = [
        "# Float codecs (benchmarks/bench_float_codecs.py)",
        "",
        f"float32 volumes of {facts['shape_zyx']} (z, y, x) voxels in {BLOCK}^3 blocks, best of "
        f"{facts['repeat']}; one thread; MB/s = raw 10^6 bytes per CPU second (per core). "
        f"Machine: {facts['cores']} cores shared with other engineers' jobs; load average "
        f"{facts['load average at start (1/5/15 min)']} at start, {facts['load average at end (1/5/15 min)']} at end.",
        "",
    ]
    for name, rows in results.items():
        lines += [f"## {name}", "",
                  "| codec | stored % of raw | ratio | encode MB/s | decode MB/s | exact | loss bound |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {r['codec']} | n/a ({r['skipped']}) | | | | | |")
                continue
            exact = "yes" if r["bit_exact"] else f"max err {r['max_abs_error']:.3g}"
            lines.append(
                f"| {r['codec']} | {r['stored_percent']:.1f} | {r['ratio']:.2f} | {r['encode_mb_s_per_core']:.0f} | "
                f"{r['decode_mb_s_per_core']:.0f} | {exact} | {r['loss_bound']} |"
            )
        t = targets[name]
        lines += [
            "",
            f"Targets (pcodec 8, the lossless default candidate): size {t['pcodec_vs_blosc_size']:.2f}x Blosc "
            f"zstd-5 + shuffle ({'met' if t['smaller_than_blosc_zstd5_shuffle'] else 'NOT met'}); decode "
            f"{t['pcodec_decode_vs_fpzip']:.1f}x fpzip's "
            f"({'met' if t['decodes_5x_faster_than_fpzip'] else 'NOT met'}).",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
