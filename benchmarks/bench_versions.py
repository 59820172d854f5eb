"""Versions: opening a version vs the working volume, committing a 20-million-block volume, compaction.

Run by hand: ``python benchmarks/bench_versions.py [--blocks 20000000] [--out DIR]``.
Writes benchmarks/results/versions.md and .json.

1. **Open**: ``Directory.open(vol)`` against ``Directory.open(vol@tag)`` on the
   same 20M-entry volume (index memory-mapped, pages checked on use), median
   of repeated opens; and a first block read after each open.
2. **Commit of an unchanged 20M-block volume**: the index is synthesised with
   the format writer (every entry present, pointing into one block file that
   is never read: a commit never reads frames), then committed once (a root
   commit), then again unchanged (HEAD knows the working file is its base's:
   the base's index is copied in the kernel), then again with HEAD's memory
   of the file erased (read, checked, diffed and written in full); the
   metadata cost is the commit file's size.
3. **Compaction**: a volume of real blocks, every block rewritten once (no
   commit keeps the old ones), then ``compact``: reclaimed / dead bytes.

The machine is shared with four other engineers' work on 2 cores: the load
average and the cores others used are recorded with each number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OtherLoad, Stopwatch, machine_facts, markdown_table  # noqa: E402

from blockfs_tasks.core import Directory  # noqa: E402
from blockfs_tasks.core import format as fmt  # noqa: E402
from blockfs_tasks.core import versions as V  # noqa: E402
from blockfs_tasks.core.codec import BlockCodec  # noqa: E402
from blockfs_tasks.core.grid import BlockGrid  # noqa: E402
from blockfs_tasks.core.naming import commit_file_name  # noqa: E402
from blockfs_tasks.core.versions.commits import write_directory  # noqa: E402
from blockfs_tasks.core.versions.trees import Tree  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def synth_volume(path: str, n_blocks: int) -> None:
    """A volume of ``n_blocks`` 64^3 uint16 blocks (grid ~ a cube), every entry present, by the format writer."""
    side = round(n_blocks ** (1 / 3))
    gx, gy = side, side
    gz = -(-n_blocks // (gx * gy))
    spec = fmt.VolumeSpec(BlockGrid((gx * 64, gy * 64, gz * 64), (64, 64, 64)), np.uint16, BlockCodec("zstd", 5, True))
    n = spec.grid.n_blocks
    rng = np.random.default_rng(0)
    index = np.zeros(n, fmt.INDEX_DTYPE)
    sizes = rng.integers(20_000, 200_000, n).astype(np.uint32)
    index["size"] = sizes
    index["offset"] = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.uint64)])
    index["file"] = 1
    index["crc32c"] = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    write_directory(path, Tree(spec, [os.path.basename(path) + ".0"], index))
    open(path + ".0", "wb").close()  # the block file exists (empty): a commit never reads a frame


def bench_open_and_commit(folder: str, n_blocks: int, repeats: int) -> dict:
    path = os.path.join(folder, "big.blockfs")
    with Stopwatch() as synth:
        synth_volume(path, n_blocks)
    out: dict = {"blocks": fmt.read_spec(path).grid.n_blocks, "synthesise_s": round(synth.seconds, 2)}
    with OtherLoad() as load, Stopwatch() as first:
        c1 = V.commit_working(path, "root commit of 20M blocks")
    out["first_commit_s"] = round(first.seconds, 2)
    out["first_commit_other_cores"] = round(load.cores, 2)
    with OtherLoad() as load, Stopwatch() as again:
        c2 = V.commit_working(path, "unchanged")
    out["unchanged_commit_s"] = round(again.seconds, 2)
    out["unchanged_commit_other_cores"] = round(load.cores, 2)
    state = V.read_head(path)
    V.refs.write_head(path, V.HeadState(state.branch, state.base, None))  # forget the file: read it all
    with OtherLoad() as load, Stopwatch() as full:
        c3 = V.commit_working(path, "unchanged, read in full")
    out["unchanged_commit_read_in_full_s"] = round(full.seconds, 2)
    out["unchanged_commit_read_in_full_other_cores"] = round(load.cores, 2)
    assert V.read_commit(path, c3).changed == 0
    out["commit_file_bytes"] = os.path.getsize(commit_file_name(path, c2))
    out["working_file_bytes"] = os.path.getsize(path)
    out["bytes_per_block_per_commit"] = round(out["commit_file_bytes"] / out["blocks"], 2)
    assert V.read_commit(path, c2).parents == (c1,) and V.read_commit(path, c2).changed == 0
    V.create_ref(path, V.TAGS, "v1", c1)
    times: dict[str, list[float]] = {"working": [], "tag": []}
    for _ in range(repeats):
        for name, target in (("working", path), ("tag", path + "@v1")):
            with Stopwatch() as sw:
                d = Directory.open(target)
                d.has_block(0, 0, 0)  # the first index page checked
            times[name].append(sw.seconds)
    out["open_working_ms"] = round(statistics.median(times["working"]) * 1e3, 3)
    out["open_tag_ms"] = round(statistics.median(times["tag"]) * 1e3, 3)
    out["open_ratio_tag_over_working"] = round(out["open_tag_ms"] / out["open_working_ms"], 2)
    return out


def bench_compaction(folder: str, n_side: int) -> dict:
    path = os.path.join(folder, "small.blockfs")
    b = 32
    d = Directory(n_side * b, n_side * b, n_side * b, np.uint16, path, b, b, b, compression="lz4", compression_level=1)
    d.create()
    rng = np.random.default_rng(1)
    origins = list(d.grid.origins())
    for o in origins:
        d.write_block(rng.integers(0, 4096, (b, b, b)).astype(np.uint16), *o)
    d.close()
    d = Directory.open(path, "r+")
    for o in origins:
        d.write_block(rng.integers(0, 4096, (b, b, b)).astype(np.uint16), *o)
    d.close()
    before = V.space_usage(path)
    with OtherLoad() as load, Stopwatch() as sw:
        report = V.compact(path, grace_seconds=0)
    after = V.space_usage(path)
    allocated = sum(os.stat(p).st_blocks * 512 for p in Directory.open(path).block_filenames)
    return {
        "blocks": len(origins),
        "live_bytes": before.live_bytes,
        "dead_bytes_before": before.dead_bytes,
        "reclaimed_bytes": report.reclaimed_bytes,
        "dead_bytes_after": after.dead_bytes,
        "reclaimed_fraction_of_dead": round(report.reclaimed_bytes / before.dead_bytes, 4),
        "allocated_bytes_after": allocated,
        "compact_s": round(sw.seconds, 3),
        "other_cores": round(load.cores, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=20_000_000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--compact-side", type=int, default=8, help="Blocks per axis of the compaction volume.")
    p.add_argument("--out", default=None, help="Folder for the volumes (default: a temporary folder).")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out) as folder:
        facts = machine_facts(folder, ["numpy", "numcodecs"])
        t0 = time.time()
        big = bench_open_and_commit(folder, args.blocks, args.repeats)
        compaction = bench_compaction(folder, args.compact_side)
    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    result = {"machine": facts, "open_and_commit": big, "compaction": compaction, "wall_s": round(time.time() - t0, 1)}
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "versions.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = ["# Versions benchmark", "", "Run by `python benchmarks/bench_versions.py`; the machine is shared with four "
          "other engineers' jobs on 2 cores (load and cores used by others are recorded).", "",
          markdown_table(["fact", "value"], facts.items()), "", "## Open a version vs the working volume, and commit "
          f"a {big['blocks']:,}-block volume", "", markdown_table(["measure", "value"], big.items()), "",
          "## Compaction after rewriting every block once", "", markdown_table(["measure", "value"],
                                                                               compaction.items()), ""]
    with open(os.path.join(args.results, "versions.md"), "w") as f:
        f.write("\n".join(md))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
