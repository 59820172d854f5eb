"""Compaction by punching holes vs by copying live frames, side by side on copies of one volume.

Run by hand: ``python benchmarks/bench_compact_copy.py [--side 8] [--out DIR]``.
Writes benchmarks/results/compact_copy.md and .json.

The volume: ``side``^3 blocks of 32^3 uint16 noise (lz4), every block written
twice in one session (so the block file interleaves dead and live frames),
then committed and tagged (a commit file the copy must republish), then
half of the blocks rewritten once more in a second session (dead frames
that the commit still needs are live). Each method runs on its own copy of
that volume (``grace_seconds=0``); reported: dead bytes before, bytes given
back (on disk), dead bytes after, seconds, and that every version reads the
same afterwards. The machine is shared with four other engineers' work on 2
cores: the load average and the cores others used are recorded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OtherLoad, Stopwatch, machine_facts, markdown_table, write_results  # noqa: E402

from blockfs_tasks.core import Directory  # noqa: E402
from blockfs_tasks.core import versions as V  # noqa: E402
from blockfs_tasks.core.naming import volume_files  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
B = 32


def make_volume(folder: str, side: int) -> str:
    os.makedirs(folder)
    path = os.path.join(folder, "vol.blockfs")
    d = Directory(side * B, side * B, side * B, np.uint16, path, B, B, B, compression="lz4", compression_level=1)
    d.create()
    d.close()
    rng = np.random.default_rng(1)
    origins = list(d.grid.origins())
    d = Directory.open(path, "r+")
    for _ in range(2):
        for o in origins:
            d.write_block(rng.integers(0, 4096, (B, B, B)).astype(np.uint16), *o)
    d.close()
    Directory.open(path).commit("all")
    V.create_ref(path, V.TAGS, "v1")
    d = Directory.open(path, "r+")
    for o in origins[::2]:
        d.write_block(rng.integers(0, 4096, (B, B, B)).astype(np.uint16), *o)
    d.close()
    return path


def digest(path: str) -> list[int]:
    """A checksum of every block of the working volume and of v1 (each block CRC-checked as it is read)."""
    out = []
    for version in (path, path + "@v1"):
        d = Directory.open(version)
        out.append(hash(b"".join(d.read_block(*o).tobytes() for o in d.grid.origins())))
    return out


def allocated(path: str) -> int:
    return sum(os.stat(f).st_blocks * 512 for f in volume_files(path))


def run(base: str, folder: str, method: str) -> dict:
    shutil.copytree(os.path.dirname(base), folder)
    path = os.path.join(folder, "vol.blockfs")
    expect, before, disk = digest(path), V.space_usage(path), allocated(path)
    with OtherLoad() as load, Stopwatch() as sw:
        report = V.compact(path, grace_seconds=0, method=method)
    return {
        "method": method,
        "dead_bytes_before": before.dead_bytes,
        "given_back_on_disk": disk - allocated(path),
        "reported_reclaimed": report.reclaimed_bytes,
        "given_back_fraction_of_dead": round((disk - allocated(path)) / before.dead_bytes, 4),
        "dead_bytes_after": V.space_usage(path).dead_bytes,
        "seconds": round(sw.seconds, 3),
        "every_version_reads_the_same": digest(path) == expect,
        "other_cores": round(load.cores, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=8, help="Blocks per axis.")
    p.add_argument("--out", default=None, help="Folder for the volumes (default: a temporary folder).")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out) as folder:
        facts = machine_facts(folder, ["numpy"])
        t0 = time.time()
        base = make_volume(os.path.join(folder, "base"), args.side)
        rows = [run(base, os.path.join(folder, m), m) for m in ("punch", "copy")]
    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    ratio = round(rows[1]["seconds"] / rows[0]["seconds"], 2) if rows[0]["seconds"] else None
    result = {"machine": facts, "blocks": args.side**3, "rows": rows, "copy_over_punch_seconds": ratio,
              "wall_s": round(time.time() - t0, 1)}
    keys = list(rows[0])
    md = ["# Compaction: punch holes vs copy live frames", "",
          "Run by `python benchmarks/bench_compact_copy.py`; the machine is shared with four other engineers' "
          "jobs on 2 cores (load and cores used by others are recorded).", "",
          markdown_table(["fact", "value"], facts.items()), "",
          f"{args.side**3} blocks of {B}^3 uint16, each written twice, committed, half rewritten again; "
          f"copy / punch time: {ratio}", "",
          markdown_table(keys, [[r[k] for k in keys] for r in rows]), ""]
    write_results(args.results, "compact_copy", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
