"""TIFF -> blockfs through Luigi vs through the live Directory API (run by hand).

Both ingest the same 512 planes of 1024x1024 uint16 (the synthetic
light-sheet volume, 1 GiB), once as a stack of 2D TIFF planes and once as one
3D TIFF, into 64^3 Blosc zstd blocks (``--clevel``, default 2) on 2 cores, in one run:

* Luigi: ``BuildDirectory`` with the local scheduler and ``--workers 2`` (a
  forked process per batch task), in this process via ``luigi.build``.
* live API: one process reads 64-plane slabs and calls ``Directory.write_blocks``
  with 2 compressing threads.

Reports MB/s of raw data, CPU seconds (the process and its reaped children:
the forked task processes), the cores other processes used during the run
(the machine is shared), Luigi's share of the wall time (wall time minus the
time spent inside the tasks' ``run()``, over 2 workers), the peak memory (USS)
of each worker process (sampled in one more, untimed Luigi run: reading
``smaps_rollup`` 50 times a second costs CPU the live run would not pay) and
the number of files. Rounds alternate which runs first; the
best wall time of each is kept, and every round is listed. Every timed run
starts right after ``common.prefault_memory`` (this VM hands freed memory back
to its host, and the first touch of a page then costs ~10 us). Results go to
``benchmarks/results/ingest_luigi.md`` and ``.json``.

    python benchmarks/bench_ingest_luigi.py [--shape 512 1024 1024] [--clevel 2] [--sources stack tiff3d]
        [--repeats 3] [--wait-quiet 600]

The target (issue 15): Luigi >= 95% of the live API's MB/s for both sources.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import luigi
import numpy as np
import tifffile
from common import (
    OtherLoad,
    _children,
    _rss_uss_bytes,
    machine_facts,
    markdown_table,
    prefault_memory,
    wait_for_quiet,
    write_results,
)

from blockfs_tasks.core import Directory
from blockfs_tasks.ingest.sources import open_source
from blockfs_tasks.ingest.synthetic import SyntheticVolume
from blockfs_tasks.tasks import BuildDirectory

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_stack(folder: str, shape: tuple[int, int, int]) -> str:
    volume = SyntheticVolume(shape)
    for z0 in range(0, shape[0], 32):
        slab = volume.slab(z0, min(shape[0], z0 + 32))
        for i, plane in enumerate(slab):
            tifffile.imwrite(os.path.join(folder, f"img_{z0 + i}.tiff"), plane)
    return os.path.join(folder, "img_*.tiff")


def write_3d(folder: str, shape: tuple[int, int, int]) -> str:
    """The same volume as one 3D (multi-page, BigTIFF) file, written slab by slab."""
    volume = SyntheticVolume(shape)
    path = os.path.join(folder, "volume.tiff")
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for z0 in range(0, shape[0], 32):
            for plane in volume.slab(z0, min(shape[0], z0 + 32)):
                tw.write(plane, contiguous=True)
    return path


class ChildPeaks:
    """Peak USS of each child process, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for pid in _children(os.getpid()):
                try:
                    _, uss = _rss_uss_bytes(pid)
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), uss)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# Where the (forked) task processes append their run() times: the run in progress sets it.
_TIMES_FILE: dict[str, str] = {}


@luigi.Task.event_handler(luigi.Event.PROCESSING_TIME)
def _record(task: luigi.Task, seconds: float) -> None:  # runs in the forked task process
    with open(_TIMES_FILE["path"], "a") as f:
        f.write(f"{task.task_family} {seconds}\n")


def run_luigi(pattern: str, dest: str, sample_memory: bool = False) -> dict[str, float]:
    """One Luigi run; ``sample_memory``: also sample the workers' memory (costs CPU, so not in timed rounds)."""
    run_times: list[float] = []
    times_file = _TIMES_FILE["path"] = dest + ".times"
    peaks = ChildPeaks()
    with peaks if sample_memory else contextlib.nullcontext(), OtherLoad() as load:
        t0 = time.perf_counter()
        result = luigi.build([BuildDirectory(source=pattern, dest=dest)], local_scheduler=True,
                             workers=2, detailed_summary=True, log_level="WARNING")
        wall = time.perf_counter() - t0
    if not os.path.exists(dest):
        raise SystemExit(result.summary_text)
    for line in open(times_file):
        family, seconds = line.split()
        if family == "WriteBlockBatch":
            run_times.append(float(seconds))
    build_time = sum(float(row.split()[1]) for row in open(times_file) if row.startswith("BuildDirectory"))
    os.unlink(times_file)
    inside = sum(run_times) / 2 + build_time
    return {
        "wall": wall,
        "cpu": load.own_cores * wall,
        "other_cores": load.cores,
        "luigi_share": max(0.0, wall - inside) / wall,
        "tasks": len(run_times),
        "worker_peak_mib": max(peaks.peaks.values(), default=0) / 2**20 if sample_memory else float("nan"),
    }


def run_live(pattern: str, dest: str, shape: tuple[int, int, int], level: int) -> dict[str, float]:
    z, y, x = shape
    d = Directory(x, y, z, np.uint16, dest, compression_level=level)
    d.create()
    with OtherLoad() as load:
        t0 = time.perf_counter()
        with open_source(pattern) as src:
            for z0 in range(0, z, 64):
                slab = src.read(z0, min(z, z0 + 64), 0, y)
                d.write_blocks(
                    ((slab[:, yy : yy + 64, xx : xx + 64], xx, yy, z0)
                     for yy in range(0, y, 64) for xx in range(0, x, 64)),
                    n_threads=2,
                )
        d.close()
        wall = time.perf_counter() - t0
    return {"wall": wall, "cpu": load.own_cores * wall, "other_cores": load.cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024], metavar=("Z", "Y", "X"))
    parser.add_argument("--clevel", type=int, default=2, help="Blosc zstd level (default 2, the pipeline's)")
    parser.add_argument("--sources", nargs="+", choices=["stack", "tiff3d"], default=["stack", "tiff3d"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each pair; the best of each is kept")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to use <= 0.25 cores (default 0: no wait)")
    parser.add_argument("--no-prefault", dest="prefault", action="store_false",
                        help="do not touch-and-free memory before each timed run (see common.prefault_memory)")
    args = parser.parse_args()
    shape = tuple(args.shape)
    luigi.configuration.get_config().set("blockfs", "compression_level", str(args.clevel))
    folder = tempfile.mkdtemp(prefix="bench-ingest-")
    rows, notes = [], []
    per_source: dict[str, dict[str, Any]] = {}
    mb = np.prod(shape) * 2 / 1e6
    try:
        facts = machine_facts(folder, ["luigi", "numcodecs", "tifffile"])
        if args.wait_quiet > 0:
            others = wait_for_quiet(timeout=args.wait_quiet)
            facts["cores used by other processes just before the run"] = f"{others:.2f}"
        load_start = os.getloadavg()
        for kind in args.sources:
            sub = os.path.join(folder, kind)
            os.makedirs(sub)
            source = write_stack(os.path.join(sub, ""), shape) if kind == "stack" else write_3d(sub, shape)
            what = f"{shape[0]} 2D TIFF planes" if kind == "stack" else "one 3D TIFF"
            luigi_runs, live_runs = [], []
            for r in range(args.repeats):  # alternating, so neither always runs first
                for run in (("luigi", "live") if r % 2 == 0 else ("live", "luigi")):
                    dest = os.path.join(sub, f"{run}.blockfs")
                    for name in [n for n in os.listdir(sub) if n.startswith(f"{run}.blockfs")]:
                        os.unlink(os.path.join(sub, name))
                    if args.prefault:
                        prefault_memory(int(np.prod(shape)) * 2)
                    if run == "luigi":
                        luigi_runs.append(run_luigi(source, dest) | {"load": os.getloadavg()[0]})
                    else:
                        live_runs.append(run_live(source, dest, shape, args.clevel) | {"load": os.getloadavg()[0]})
            luigi_result = min(luigi_runs, key=lambda x: x["wall"])
            live_result = min(live_runs, key=lambda x: x["wall"])
            for name in [n for n in os.listdir(sub) if n.startswith("luigi.blockfs")]:
                os.unlink(os.path.join(sub, name))
            memory_run = run_luigi(source, os.path.join(sub, "luigi.blockfs"), sample_memory=True)
            a = Directory.open(os.path.join(sub, "luigi.blockfs"))
            b = Directory.open(os.path.join(sub, "live.blockfs"))
            same = bool(np.array_equal(a.index["crc32c"], b.index["crc32c"]))
            walls = "; ".join(
                f"Luigi {x['wall']:.2f} s / {x['cpu']:.2f} CPU s (others {x['other_cores']:.2f} cores), "
                f"live {y['wall']:.2f} s / {y['cpu']:.2f} CPU s (others {y['other_cores']:.2f} cores)"
                for x, y in zip(luigi_runs, live_runs, strict=True)
            )
            ratio = live_result["wall"] / luigi_result["wall"]
            notes.append(f"{what}: {luigi_result['tasks']} batch tasks; same blocks in both volumes: {same}; "
                         f"Luigi / live = {ratio:.2f} (best of {args.repeats}; every round: {walls})")
            per_source[kind] = {
                "luigi": luigi_runs, "live": live_runs, "ratio_best_wall": ratio, "same_blocks": same,
                "luigi_memory_run": memory_run,
            }
            rows += [
                [what, "Luigi, local scheduler, 2 workers", f"{luigi_result['wall']:.2f}",
                 f"{luigi_result['cpu']:.2f}", f"{luigi_result['other_cores']:.2f}",
                 f"{mb / luigi_result['wall']:.0f}", f"{100 * luigi_result['luigi_share']:.1f}%",
                 f"{memory_run['worker_peak_mib']:.0f}",
                 len([f for f in os.listdir(sub) if f.startswith("luigi.blockfs")])],
                [what, "live Directory API, 2 threads", f"{live_result['wall']:.2f}", f"{live_result['cpu']:.2f}",
                 f"{live_result['other_cores']:.2f}", f"{mb / live_result['wall']:.0f}",
                 "-", "-", len([f for f in os.listdir(sub) if f.startswith("live.blockfs")])],
            ]
            shutil.rmtree(sub)
        table = markdown_table(
            ["source", "ingest", "wall s", "CPU s", "other cores", "MB/s", "Luigi share", "peak MiB per worker",
             "files"], rows
        )
        facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        lines = [
            "# TIFF -> blockfs: Luigi vs live API", "",
            f"{shape[0]} planes of {shape[1]}x{shape[2]} uint16 ({mb:.0f} MB), 64^3 blocks, zstd-{args.clevel} + "
            f"shuffle, 2 cores shared with other engineers' jobs (load average at start {load_start[0]:.2f}). "
            "Best wall time of each; CPU s counts the forked task processes; 'other cores': what other "
            "processes used during that run.", "",
            table, "", *(f"- {n}" for n in notes), "", *(f"- {k}: {v}" for k, v in facts.items()), "",
            "Rerun: `python benchmarks/bench_ingest_luigi.py --wait-quiet 600`", "",
        ]
        result = {"shape_zyx": list(shape), "clevel": args.clevel, "sources": per_source, "facts": facts}
        write_results(RESULTS, "ingest_luigi", result, lines)
        print("\n".join(lines))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
