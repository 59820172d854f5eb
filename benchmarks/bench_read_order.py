"""Cold reads of a Pool-written volume: grid order vs file order with coalesced runs (run by hand).

A volume written by ``multiprocessing.Pool(2)`` interleaves its blocks over
two block files. This measures, on a dropped page cache, (a) the IO alone:
every stored frame read with one ``pread`` each in grid (position) order, as
the region reader did, against the runs of ``core.read_plan.plan_runs`` (file
order, adjacent frames in one read of up to 4 MiB), 8 threads each; and (b)
the whole ``Directory.open(p)[:, :, :]`` with planning on and off. Rounds
alternate the order. Results: ``benchmarks/results/read_order.md``.

    python benchmarks/bench_read_order.py [--shape 256 1024 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_volume, drop_page_cache, machine_facts, markdown_table, prefault_memory, write_results

import blockfs_tasks.core.region as region
from blockfs_tasks.core import Directory
from blockfs_tasks.core.read_plan import MIN_BLOCKS, Frame, plan_runs

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
_WORKER: dict[str, object] = {}


def _write(x: int, y: int, z: int) -> None:
    d, v = cast(Directory, _WORKER["d"]), cast(np.ndarray, _WORKER["v"])  # inherited by fork
    d.write_block(v[z : z + 64, y : y + 64, x : x + 64], x, y, z)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[256, 1024, 1024], metavar=("Z", "Y", "X"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clevel", type=int, default=2)
    p.add_argument("--results", default=RESULTS, help=f"folder of read_order.md and .json (default {RESULTS})")
    args = p.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-read-order-")
    facts = machine_facts(folder, ["numpy", "numcodecs"])
    try:
        volume = build_volume(args.shape)
        z, y, x = volume.shape
        path = os.path.join(folder, "pool.blockfs")
        d = Directory(x, y, z, volume.dtype, path, compression_level=args.clevel)
        d.create()
        _WORKER.update(d=d, v=volume)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.starmap(_write, d.grid.origins())
        d.close()
        r = Directory.open(path)
        files = r.block_filenames
        fds = [os.open(f, os.O_RDONLY) for f in files]
        idx = np.asarray(r.index)
        frames = [Frame((int(i), 0, 0), int(idx[i]["file"]) - 1, int(idx[i]["offset"]), int(idx[i]["size"]))
                  for i in np.flatnonzero(idx["file"])]
        runs = plan_runs(frames)
        stored = sum(f.size for f in frames)

        def grid_io() -> None:
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda f: os.pread(fds[f.file], f.size, f.offset), frames))

        def runs_io() -> None:
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda run: os.pread(fds[run.file], run.stop - run.start, run.start), runs))

        def full(planned: bool) -> Callable[[], None]:
            def go() -> None:
                region.MIN_BLOCKS = MIN_BLOCKS if planned else 10**9
                Directory.open(path)[:, :, :]
            return go

        cases = {
            "IO only: grid order, one pread per frame": (grid_io, stored),
            "IO only: file order, coalesced runs": (runs_io, stored),
            "d[:, :, :] per block (planning off)": (full(False), volume.nbytes),
            "d[:, :, :] planned (file order, runs)": (full(True), volume.nbytes),
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for i in range(args.rounds):
            names = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in names:
                fn, _ = cases[name]
                drop_page_cache(files)
                prefault_memory(volume.nbytes)
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0, os.getloadavg()[0]))
        region.MIN_BLOCKS = MIN_BLOCKS
        rows = []
        for name, (_, nbytes) in cases.items():
            best = min(t for t, _ in times[name])
            rows.append([name, f"{nbytes / 1e9 / best:.2f}", f"{best:.2f}",
                         ", ".join(f"{t:.2f} s (load {lo:.1f})" for t, lo in times[name])])
        text = (
            f"# Cold reads of a Pool-written volume: grid order vs file order\n\n"
            f"`python benchmarks/bench_read_order.py --shape {' '.join(map(str, args.shape))}` — "
            f"{time.strftime('%Y-%m-%d %H:%M')}. {volume.nbytes / 2**30:.2f} GiB uint16 synthetic light-sheet, "
            f"64^3 blocks, zstd-{args.clevel}, written by a fork Pool(2) into {len(files)} block files; "
            f"{len(frames)} frames ({stored / 1e6:.0f} MB stored) -> {len(runs)} runs. Page cache dropped "
            f"before every measurement; best of {args.rounds} rounds (order alternating). GB/s: stored bytes for "
            f"the IO rows, raw bytes for the full reads. 2 cores shared with other engineers' jobs.\n\n"
            + markdown_table(["read", "GB/s (best)", "best s", "every round"], rows) + "\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in facts.items())
            + f"\n- load average at end: {os.getloadavg()[0]:.2f}\n"
        )
        result = {
            "shape_zyx": args.shape, "clevel": args.clevel, "rounds": args.rounds, "frames": len(frames),
            "runs": len(runs), "stored_bytes": stored, "raw_bytes": volume.nbytes,
            "seconds": {name: [t for t, _ in times[name]] for name in cases},
            "load_average": {name: [lo for _, lo in times[name]] for name in cases}, "machine": facts,
        }
        write_results(args.results, "read_order", result, [text])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
