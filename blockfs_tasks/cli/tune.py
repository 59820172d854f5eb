"""``blockfs-tune VOLUME``: which Blosc setting suits this data, measured on a sample of its blocks.

Reads a few hundred blocks of a volume (drawn at random, fixed seed), then
compresses them with every candidate setting (:mod:`.core.codec_survey`) and
prints the ratio, encode and decode MB/s per core, and what ingest and a
full read would run at on this machine's cores if the codec is the limit.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..core.errors import ConfigurationError
from .common import _entry, _progress, positive_int


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-tune",
        description="Measure Blosc compressors, levels and shuffles on a sample of a volume's blocks.",
    )
    p.add_argument("blockfs_file", help="The directory file of the volume.")
    p.add_argument("--blocks", type=positive_int, default=200, help="Blocks to sample (default: 200).")
    p.add_argument("--cnames", nargs="+", default=["zstd", "lz4", "lz4hc"],
                   help="Blosc compressors to try (default: zstd lz4 lz4hc).")
    p.add_argument("--levels", nargs="+", type=int, default=[1, 2, 3, 5, 7, 9],
                   help="Levels to try (default: 1 2 3 5 7 9).")
    p.add_argument("--shuffles", nargs="+", type=int, choices=[0, 1, 2], default=[1, 2],
                   help="Shuffles to try: 0 none, 1 byte, 2 bit (default: 1 2).")
    p.add_argument("--cores", type=positive_int, default=len(os.sched_getaffinity(0)),
                   help="Cores to project ingest and read speed for (default: the usable cores here).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the block sample (default: 0).")
    p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    return p


@_entry(_parser, resumable=False)
def main(args: argparse.Namespace) -> int:
    """blockfs-tune <blockfs-file>"""
    from ..core import Directory
    from ..core.codec_survey import candidates, implied_speeds, measure, sample_origins

    d = Directory.open(args.blockfs_file)
    origins = sample_origins(list(d.block_origins()), args.blocks, args.seed)
    if not origins:
        raise ConfigurationError(f"{d.directory_filename}: the volume has no blocks written; nothing to measure")
    blocks = [d.read_block(*o) for o in origins]
    cands = candidates(args.cnames, args.levels, args.shuffles)
    bar = _progress(len(cands), args.silent, "setting")
    results = []
    for c in cands:
        results.append(measure(c, blocks))
        bar.update(1)
    bar.close()
    codec = d.spec.codec  # a float codec has no Blosc settings: nothing is marked then
    current = (getattr(codec, "compression", None), getattr(codec, "level", None), getattr(codec, "shuffle", None))
    rows: list[dict[str, Any]] = []
    for m in sorted(results, key=lambda m: -m.ratio):
        ingest, read = implied_speeds(m, args.cores)
        row = m.to_dict()
        c = m.candidate
        row.update(ingest_mbps=round(ingest), read_mbps=round(read),
                   current=(c.cname, c.clevel, c.shuffle) == (current[0], current[1], int(current[2] or 0)))
        rows.append(row)
    raw = sum(b.nbytes for b in blocks)
    if args.json:
        print(json.dumps({"volume": d.directory_filename, "blocks": len(blocks), "raw_bytes": raw,
                          "cores": args.cores, "settings": rows}, indent=1))
        return 0
    print(f"{d.directory_filename}: {len(blocks)} blocks of {d.dtype.name} ({raw / 2**20:.1f} MiB) sampled; "
          f"speeds per core on one thread, projected to {args.cores} core(s); * = the volume's setting")
    print(f"{'setting':16} {'ratio':>8} {'enc MB/s':>9} {'dec MB/s':>9} {'ingest MB/s':>12} {'read MB/s':>10}")
    for r in rows:
        label = f"{r['cname']}-{r['clevel']} {r['shuffle']}"
        mark = "*" if r["current"] else " "
        print(f"{label:15}{mark} {r['ratio']:8.2f} {r['encode_mbps_per_core']:9.0f} "
              f"{r['decode_mbps_per_core']:9.0f} {r['ingest_mbps']:12.0f} {r['read_mbps']:10.0f}")
    print("ingest / read MB/s = cores x per-core speed: an upper bound while the codec is the bottleneck "
          "(disk and source reads can be slower).")
    return 0
