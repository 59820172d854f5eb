"""Codec survey (run by hand): Blosc compressors, levels and shuffles on three kinds of data.

Measures the compression ratio and the encode / decode speed per core of
every Blosc setting in lz4 / lz4hc / zstd x levels 1-9 x byte / bit shuffle,
on 64^3 blocks of:

* ``light-sheet``: the synthetic light-sheet volume (``SyntheticVolume``), uint16;
* ``em``: a synthesised EM-like uint8 volume: Voronoi cells whose boundaries are
  dark membranes, textured cytoplasm, a few dark organelles, shot noise;
* ``labels32`` / ``labels64``: sparse segmentation labels (uint32, uint64):
  the Voronoi cells of the EM volume, ~35% of them labelled with large ids,
  the rest 0.

Each setting compresses the same blocks one frame at a time on one thread
(``blockfs_tasks.core.codec_survey``, the module ``blockfs-tune`` uses).
Results go to ``benchmarks/results/codecs.md`` and ``codecs.json``.

    python benchmarks/bench_codecs.py [--blocks 48] [--kinds light-sheet em]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_facts, markdown_table

from blockfs_tasks.core.codec_survey import Measurement, candidates, survey
from blockfs_tasks.ingest.synthetic import SyntheticVolume

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "codecs.md")
B = 64


def light_sheet(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    return SyntheticVolume(shape, seed=seed).slab(0, shape[0])


def _voronoi(shape: tuple[int, int, int], n_cells: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(nearest-seed id, membrane distance) of every voxel: d2 - d1 of the two nearest seeds."""
    from scipy.spatial import cKDTree

    seeds = rng.uniform(0, 1, (n_cells, 3)) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    dist, idx = cKDTree(seeds).query(grid, k=2, workers=-1)
    cell = idx[:, 0].reshape(shape).astype(np.int64)
    membrane = (dist[:, 1] - dist[:, 0]).reshape(shape).astype(np.float32)
    return cell, membrane


def _smooth_noise(shape: tuple[int, int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-9)


def em(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """EM-like uint8: bright textured cytoplasm, dark 2-3 voxel membranes, dark organelles, noise."""
    rng = np.random.default_rng(seed)
    n_cells = max(4, int(np.prod(shape) / 40**3))
    _, membrane = _voronoi(shape, n_cells, rng)
    texture = 12 * _smooth_noise(shape, 1.5, rng) + 6 * _smooth_noise(shape, 4.0, rng)
    image = 150 + texture - 95 * np.exp(-(membrane**2) / 2.0)
    organelles = _smooth_noise(shape, 3.0, rng) > 2.2
    image[organelles] -= 50
    image += rng.normal(0, 7, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def labels(shape: tuple[int, int, int], seed: int, dtype: str) -> np.ndarray:
    """Sparse segmentation: Voronoi cells, ~35% labelled with large random ids, the rest 0."""
    rng = np.random.default_rng(seed)
    n_cells = max(4, int(np.prod(shape) / 40**3))
    cell, membrane = _voronoi(shape, n_cells, rng)
    top = 2**40 if dtype == "uint64" else 2**31
    ids = rng.integers(1, top, n_cells, dtype=np.int64)
    ids[rng.uniform(size=n_cells) > 0.35] = 0
    out = ids[cell].astype(dtype)
    out[membrane < 1.0] = 0  # unlabelled boundaries, as a segmentation leaves them
    return out


KINDS: dict[str, tuple[Callable[[tuple[int, int, int], int], np.ndarray], str]] = {
    "light-sheet": (light_sheet, "synthetic light-sheet (SyntheticVolume), uint16"),
    "em": (em, "EM-like: membranes + textured cytoplasm + organelles + noise, uint8"),
    "labels32": (lambda s, seed: labels(s, seed, "uint32"), "sparse segmentation labels, uint32"),
    "labels64": (lambda s, seed: labels(s, seed, "uint64"), "sparse segmentation labels, uint64"),
}


def blocks_of(volume: np.ndarray) -> list[np.ndarray]:
    z, y, x = volume.shape
    return [volume[k:k + B, j:j + B, i:i + B] for k in range(0, z, B) for j in range(0, y, B) for i in range(0, x, B)]


def shape_for(n_blocks: int) -> tuple[int, int, int]:
    """A (z, y, x) volume of about ``n_blocks`` 64^3 blocks: 2 planes of blocks, square in y and x."""
    side = max(1, round((n_blocks / 2) ** 0.5))
    return (2 * B, side * B, side * B)


def best_by(ms: Sequence[Measurement], key: Callable[[Measurement], float]) -> Measurement:
    return max(ms, key=key)


def render(results: dict[str, list[Measurement]], args: argparse.Namespace, facts: dict[str, str],
           seconds: float, load: tuple[float, float, float]) -> str:
    lines = [
        "# Codec survey: Blosc settings on three kinds of data",
        "",
        f"`python benchmarks/bench_codecs.py --blocks {args.blocks}` — run {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{seconds:.0f} s. 64^3 blocks; every setting compresses the same blocks one frame at a time on one "
        "thread (`blockfs_tasks.core.codec_survey`, as `blockfs-tune` does); MB/s are raw MB (10^6 bytes) per "
        "second **per core**, the fastest of "
        f"{args.repeats} pass(es). Load average at start / end: {load[0]:.2f} / {os.getloadavg()[0]:.2f} "
        "(2 cores, shared with 4 other engineers' jobs: speeds are pessimistic, ratios exact).",
        "",
    ]
    for kind, ms in results.items():
        n = ms[0].n_blocks
        lines += [f"## {kind}: {KINDS[kind][1]} ({n} blocks, {ms[0].raw_bytes / 2**20:.0f} MiB)", ""]
        rows = []
        for m in sorted(ms, key=lambda m: (m.candidate.cname, m.candidate.shuffle, m.candidate.clevel)):
            rows.append([m.candidate.label, f"{m.ratio:.3f}", f"{m.encode_mbps:.0f}", f"{m.decode_mbps:.0f}",
                         f"{m.blocksize // 1024}"])
        lines += [markdown_table(["setting", "ratio", "encode MB/s/core", "decode MB/s/core",
                                  "Blosc blocksize KiB"], rows), ""]
        ratio = best_by(ms, lambda m: m.ratio)
        enc = best_by(ms, lambda m: m.encode_mbps)
        lines += [f"- best ratio: {ratio.candidate.label} {ratio.ratio:.3f}; fastest encode: "
                  f"{enc.candidate.label} {enc.encode_mbps:.0f} MB/s/core at ratio {enc.ratio:.3f}", ""]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in facts.items()] + [""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=32, help="64^3 blocks per kind of data (default 32)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    p.add_argument("--cnames", nargs="+", default=["zstd", "lz4", "lz4hc"])
    p.add_argument("--levels", nargs="+", type=int, default=list(range(1, 10)))
    p.add_argument("--repeats", type=int, default=1, help="passes per setting; the fastest is kept (default 1)")
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    load = os.getloadavg()
    t0 = time.perf_counter()
    cands = candidates(args.cnames, args.levels, (1, 2))
    results: dict[str, list[Measurement]] = {}
    for kind in args.kinds:
        make, _ = KINDS[kind]
        volume = make(shape_for(args.blocks), args.seed)
        print(f"[{time.strftime('%H:%M:%S')}] {kind}: {volume.shape} {volume.dtype}, {len(cands)} settings",
              file=sys.stderr, flush=True)
        results[kind] = survey(cands, blocks_of(volume), args.repeats)
    facts = machine_facts(HERE, ["numpy", "numcodecs", "imagecodecs"])
    text = render(results, args, facts, time.perf_counter() - t0, load)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as f:
        f.write(text)
    record = {
        "load_average_start": load, "load_average_end": os.getloadavg(), "blocks": args.blocks,
        "repeats": args.repeats, "machine": facts,
        "kinds": {k: [m.to_dict() for m in ms] for k, ms in results.items()},
    }
    with open(os.path.splitext(args.results)[0] + ".json", "w") as f:
        json.dump(record, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
