"""How fast BuildDirectory merges the fragments of a ~10 TB volume (run by hand).

Writes synthetic fragments for a 20-million-block volume (64^3 uint16 blocks,
~10 TB raw) split into ~1000 batches, with sparse block files of the right
size and no block data, then times ``build_directory`` and its peak memory.
Target (issue): < 60 s and < 2 GiB on a 2-core machine.

    python benchmarks/bench_build_directory.py [--blocks 20000000] [--batches 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import numpy as np

from blockfs_tasks.core import BlockGrid, VolumeSpec
from blockfs_tasks.core.batch import build_directory
from blockfs_tasks.core.blockfile import block_file_name, fragment_name
from blockfs_tasks.core.codec import checksum
from blockfs_tasks.core.format import ENTRY_DTYPE, encode_fragment_header


def write_fragments(folder: str, spec: VolumeSpec, n_batches: int) -> str:
    """Fragments whose entries say every block is 170 kB, as zstd-5 light-sheet data is."""
    dest = os.path.join(folder, "vol.blockfs")
    n = spec.grid.n_blocks
    bounds = np.linspace(0, n, n_batches + 1).astype(np.int64)
    header = encode_fragment_header(spec)
    for k in range(n_batches):
        positions = np.arange(bounds[k], bounds[k + 1], dtype=np.uint64)
        entries = np.zeros(len(positions), ENTRY_DTYPE)
        entries["position"] = positions
        entries["size"] = 170_000
        entries["offset"] = np.arange(len(positions), dtype=np.uint64) * 170_000
        entries["file"] = k
        entries["crc32c"] = positions.astype(np.uint32)
        raw = entries.tobytes()
        view = np.frombuffer(raw, np.uint8).reshape(-1, 32)
        entries["entry_crc32c"] = [checksum(row[:28].tobytes()) for row in view]
        with open(fragment_name(dest, k), "wb") as f:
            f.write(header + entries.tobytes())
        with open(block_file_name(dest, k), "wb") as f:
            f.truncate(len(positions) * 170_000)  # sparse: no data
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20_000_000)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--out", default=None, help="Markdown file to append the result to.")
    args = parser.parse_args()
    side = round((args.blocks / 3) ** (1 / 3))
    grid = BlockGrid((64 * side, 64 * side, 64 * -(-args.blocks // (side * side))), (64, 64, 64))
    spec = VolumeSpec(grid, np.uint16)
    folder = tempfile.mkdtemp(prefix="bench-build-")
    try:
        t0 = time.perf_counter()
        dest = write_fragments(folder, spec, args.batches)
        prepared = time.perf_counter() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        n = build_directory(dest, spec, range(args.batches))
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        raw_tb = n * 64**3 * 2 / 1e12
        line = (
            f"| {grid.n_blocks:,} blocks ({raw_tb:.1f} TB raw), {args.batches} fragments | "
            f"{elapsed:.1f} s | peak RSS {peak / 2**30:.2f} GiB (before build {rss0 * 1024 / 2**30:.2f} GiB) | "
            f"directory {os.path.getsize(dest) / 2**20:.0f} MiB |"
        )
        print(f"fragments written in {prepared:.1f} s")
        print(line)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
