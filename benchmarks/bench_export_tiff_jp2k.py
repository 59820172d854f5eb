"""Benchmark: blockfs2tif and blockfs2jp2k against a tensorstore + tifffile peer (run by hand).

    python benchmarks/bench_export_tiff_jp2k.py                      # 512x1024x1024 uint16, ~1 GiB
    python benchmarks/bench_export_tiff_jp2k.py --shape 128 1024 1024  # a quicker look

Builds (or reuses, in ``--workdir``) a synthetic volume (``SyntheticVolume``, 64^3
blocks, Blosc zstd-5 + shuffle) and a zarr v3 copy of it written with tensorstore
(same chunks, same Blosc zstd-5 + shuffle), then measures, side by side in one
run, each method in its own fresh process (time of the export call, and the
process's peak RSS):

* ``blockfs2tif`` (the console script's ``main``), zlib level ``--level``, ``--workers`` threads,
  and, for analysis only, the same with the fsync of published files turned off;
* peer: tensorstore reads slabs of 64 planes from the zarr copy, then a plain
  ``tifffile.imwrite(..., compression="zlib", compressionargs={"level": N})``
  loop, with tifffile's default encoder threads, and with ``maxworkers=--workers``;
* ``blockfs2jp2k`` lossless, with ``--psnr 40``, and lossless ``--htj2k``, on the first planes.

Methods run in rotation ``--repeats`` times (``--wait-quiet S`` waits up to S
seconds for a quiet machine before each); the table shows the best time of each
and its ratio to the fastest peer. Results go to
``benchmarks/results/export_tiff_jp2k.md`` (raw numbers in ``.json`` beside it;
``--report-only`` rewrites the report from them). The original blockfs2tif is not
measured: its source is not available here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "export_tiff_jp2k.md"
RAW = HERE / "results" / "export_tiff_jp2k.json"  # every run's numbers, to redo the report (--report-only)
SLAB = 64


# ----------------------------------------------------------------- the data
def build_volume(workdir: Path, shape: tuple[int, int, int]) -> Path:
    """The synthetic blockfs volume in ``workdir`` (reused when it already has this shape)."""
    from blockfs_tasks.core import Directory
    from blockfs_tasks.ingest.synthetic import SyntheticVolume

    path = workdir / "volume" / "vol.blockfs"
    if path.exists():
        try:
            if Directory.open(str(path)).shape == shape:
                return path
        except Exception:  # any error: rebuilt below
            pass
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True)
    nz, ny, nx = shape
    synthetic = SyntheticVolume(shape, "uint16", seed=0)
    d = Directory(nx, ny, nz, np.uint16, str(path), 64, 64, 64, compression="zstd", compression_level=5)
    d.create()
    t0 = time.perf_counter()
    for z0 in range(0, nz, 64):
        slab = synthetic.slab(z0, min(z0 + 64, nz))
        d.write_blocks(
            ((slab[:, y : y + 64, x : x + 64], x, y, z0) for y in range(0, ny, 64) for x in range(0, nx, 64)), 2
        )
    d.close()
    print(f"built {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def build_zarr(workdir: Path, volume: Path) -> Path:
    """A zarr v3 copy of the volume, written with tensorstore (64^3 chunks, Blosc zstd-5 + shuffle)."""
    import tensorstore as ts

    from blockfs_tasks.core import Directory

    path = workdir / "volume.zarr"
    d = Directory.open(str(volume))
    if (path / "zarr.json").exists() and json.loads((path / "zarr.json").read_text())["shape"] == list(d.shape):
        return path
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    store = ts.open(
        {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "shape": list(d.shape),
                "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [64, 64, 64]}},
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "shuffle",
                                                         "typesize": 2, "blocksize": 0}},
                ],
            },
            "create": True,
            "delete_existing": True,
        }
    ).result()
    for z0 in range(0, d.shape[0], SLAB):
        z1 = min(z0 + SLAB, d.shape[0])
        store[z0:z1].write(d[z0:z1]).result()
    print(f"built {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


# ---------------------------------------------------------- one measurement
def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes.

    Not ``getrusage``: Linux carries the parent's maximum over fork + exec into ru_maxrss.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(method: str, volume: str, zarr: str, out: str, level: int, workers: int, planes: int) -> dict:
    """Run one method in this process; return its time, peak RSS and output size."""
    os.makedirs(out, exist_ok=True)
    pattern = os.path.join(out, "img_%04d.tif")
    baseline = peak_rss()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if method.startswith("blockfs2tif"):
        from blockfs_tasks.cli import tif_main

        if method.endswith("no-fsync"):  # analysis only: what durable publishing costs (the peer never fsyncs)
            import blockfs_tasks.core.atomic as atomic

            atomic.fsync_path = atomic.fsync_folder = lambda path: None

        argv = ["--input", volume, "--output-pattern", pattern, "--n-workers", str(workers),
                "--compression", str(level), "--silent"]
        t0 = time.perf_counter()
        assert tif_main(argv) == 0
        elapsed = time.perf_counter() - t0
    elif method.startswith("tensorstore+tifffile"):
        import tensorstore as ts
        import tifffile

        extra: dict[str, Any] = {"maxworkers": workers} if method.endswith("maxworkers") else {}
        t0 = time.perf_counter()
        store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": zarr}}).result()
        nz = store.shape[0]
        for z0 in range(0, nz, SLAB):
            slab = store[z0 : min(z0 + SLAB, nz)].read().result()
            for i in range(slab.shape[0]):
                tifffile.imwrite(pattern % (z0 + i), slab[i], compression="zlib",
                                 compressionargs={"level": level}, **extra)
            del slab
        elapsed = time.perf_counter() - t0
    elif method.startswith("blockfs2jp2k"):
        from blockfs_tasks.cli import jp2k_main
        from blockfs_tasks.export.jp2k import load_glymur

        load_glymur()  # library lookup is not part of the timing
        pattern = os.path.join(out, "img_%04d.jp2")
        argv = ["--input", volume, "--output-pattern", pattern, "--n-workers", str(workers), "--silent",
                "--z1", str(planes)]
        if method.endswith("psnr40"):
            argv += ["--psnr", "40"]
        if method.endswith("htj2k"):
            argv = [*argv[:3], os.path.join(out, "img_%04d.j2c"), *argv[4:], "--htj2k"]
        t0 = time.perf_counter()
        assert jp2k_main(argv) == 0
        elapsed = time.perf_counter() - t0
    else:
        raise ValueError(f"unknown method {method!r}")
    peak = peak_rss()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    files = os.listdir(out)
    return {
        "method": method,
        "seconds": elapsed,
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "peak_rss": peak,
        "baseline_rss": baseline,
        "files": len(files),
        "bytes": sum(os.path.getsize(os.path.join(out, f)) for f in files),
    }


def wait_quiet(seconds: float, threshold: float = 1.0) -> float:
    """Sleep until the 1-minute load average is below ``threshold`` (at most ``seconds``); return it."""
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def measure(method: str, args: argparse.Namespace, volume: Path, zarr: Path) -> dict:
    """Run ``method`` in a fresh interpreter (so peak RSS is its own); check and remove its output."""
    load = wait_quiet(args.wait_quiet) if args.wait_quiet else os.getloadavg()[0]
    out = Path(args.workdir) / "out" / method
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--run-one", method, "--volume", str(volume), "--zarr", str(zarr),
           "--out", str(out), "--level", str(args.level), "--workers", str(args.workers),
           "--jp2-planes", str(args.jp2_planes)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["load_before"] = load
    if method in ("blockfs2tif", "blockfs2tif no-fsync", "tensorstore+tifffile"):
        check_tiffs(out, volume)
    shutil.rmtree(out, ignore_errors=True)
    print(f"{method:34} {row['seconds']:7.2f} s  CPU {row['cpu_seconds']:6.1f} s  peak RSS "
          f"{row['peak_rss'] / 2**20:7.0f} MiB  load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return row


def check_tiffs(out: Path, volume: Path) -> None:
    """A few planes of the output equal the volume's."""
    import tifffile

    from blockfs_tasks.core import Directory

    d = Directory.open(str(volume))
    for z in sorted({0, d.shape[0] // 2, d.shape[0] - 1}):
        if not np.array_equal(tifffile.imread(out / f"img_{z:04d}.tif"), d[z]):
            raise AssertionError(f"{out}: plane {z} differs from the volume")


# ------------------------------------------------------------------ report
def report(
    rows: dict[str, list[dict]], args: argparse.Namespace, shape: tuple[int, int, int], load: list[float]
) -> str:
    best = {m: min(r, key=lambda row: row["seconds"]) for m, r in rows.items()}
    gib = np.prod(shape) * 2 / 2**30
    peers = [m for m in best if m.startswith("tensorstore")]
    fastest = min(peers, key=lambda m: best[m]["seconds"])
    lines = [
        "# TIFF and JPEG 2000 export benchmark",
        "",
        f"`python benchmarks/bench_export_tiff_jp2k.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} with {os.cpu_count()} cores (shared with other work: timings are noisy; "
        f"1-minute load average {min(load):.1f}-{max(load):.1f} during the run), Python {platform.python_version()}.",
        "",
        f"Volume: {shape[0]}x{shape[1]}x{shape[2]} (z, y, x) uint16 = {gib:.2f} GiB from `SyntheticVolume`, "
        "64^3 blocks, Blosc zstd-5 + shuffle; the peer reads a zarr v3 copy with the same chunks and codec "
        "(written by tensorstore). Each method runs in a fresh process; time = the export call; "
        f"peak RSS = the process's maximum resident set (imports included). Best of {args.repeats} runs, "
        "methods in rotation; files in the page cache for every method.",
        "",
        f"## TIFF: one plane per file, zlib level {args.level}, {args.workers} workers",
        "",
        "| method | time (s) | CPU (s) | MiB/s of voxels | peak RSS (MiB) | RSS growth in the export (MiB) "
        "| output (MiB) | time vs fastest peer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in ["blockfs2tif", *peers, *(["blockfs2tif no-fsync"] if "blockfs2tif no-fsync" in best else [])]:
        row = best[m]
        lines.append(
            f"| {m} | {row['seconds']:.2f} | {row['cpu_seconds']:.1f} | {gib * 1024 / row['seconds']:.0f} | "
            f"{row['peak_rss'] / 2**20:.0f} | "
            f"{(row['peak_rss'] - row['baseline_rss']) / 2**20:.0f} | {row['bytes'] / 2**20:.0f} | "
            f"{row['seconds'] / best[fastest]['seconds']:.2f}x |"
        )
    ratio = best["blockfs2tif"]["seconds"] / best[fastest]["seconds"]
    plain = best["blockfs2tif"]["seconds"] / best["tensorstore+tifffile"]["seconds"]
    mem = best["blockfs2tif"]["peak_rss"] / best[fastest]["peak_rss"]
    cpu = best["blockfs2tif"]["cpu_seconds"]
    lines += [
        "",
        f"blockfs2tif takes **{ratio:.2f}x** the time of the fastest peer (`{fastest}`) - target <= 0.75x: "
        f"**{'met' if ratio <= 0.75 else 'NOT met'}** - and **{plain:.2f}x** the time of the plain "
        f"tensorstore + tifffile loop (**{'met' if plain <= 0.75 else 'NOT met'}**), with {mem:.2f}x the "
        "fastest peer's peak RSS.",
        "",
        f"Why not lower: all three are CPU-bound in deflate (libdeflate for all: the encoder tifffile itself "
        f"uses) and spend similar CPU (blockfs2tif {cpu:.1f} s; peers "
        + ", ".join(f"{best[m]['cpu_seconds']:.1f} s" for m in peers)
        + f"; encoding on two threads costs a little more CPU than on one), so with {args.workers} cores no "
        f"method can take much less than CPU / {args.workers} = {cpu / args.workers:.1f} s. blockfs2tif "
        f"reaches {best['blockfs2tif']['seconds']:.1f} s by keeping both cores busy (reading, encoding and "
        "publishing overlap); the peer with `maxworkers` also encodes each plane on both cores and loses only "
        "its serial slab reads and file writes, so ~0.75x of it would need a cheaper encoder, not a better "
        "pipeline. Other sessions shared the 2 cores during the run (see the load averages below).",
    ]
    if "blockfs2tif no-fsync" in best:
        saved = best["blockfs2tif"]["seconds"] - best["blockfs2tif no-fsync"]["seconds"]
        verdict = (
            f"here it saved {saved:.1f} s" if saved > 0.1 * best["blockfs2tif"]["seconds"]
            else "here the difference is within the run-to-run noise: fsync is not what bounds the time"
        )
        lines += [
            "",
            "`blockfs2tif no-fsync` is not a mode of the exporter: the same run with the fsync of each published "
            f"file (and of its folder) turned off, to show what durable publishing costs ({verdict}); the peers "
            "never fsync.",
        ]
    lines += [
        "",
        "Peers: `tensorstore+tifffile` = tensorstore slab read (64 planes) + `tifffile.imwrite(..., "
        "compression='zlib', compressionargs={'level': N})` per plane (tifffile's default encoder threads: "
        "half the cores, so 1 here); `tensorstore+tifffile maxworkers` = the same with "
        f"`maxworkers={args.workers}`. The original blockfs2tif could not be measured: its source is not "
        "available here.",
        "",
        f"## JPEG 2000: first {args.jp2_planes} planes, {args.workers} workers",
        "",
        "| method | time (s) | planes/s | peak RSS (MiB) | output (KiB) | ratio vs raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    raw = args.jp2_planes * shape[1] * shape[2] * 2
    for m in [m for m in best if m.startswith("blockfs2jp2k")] or ["(not measured: --tiff-only)"]:
        if m not in best:
            lines.append(f"| {m} | | | | | |")
            continue
        row = best[m]
        lines.append(
            f"| {m} | {row['seconds']:.2f} | {args.jp2_planes / row['seconds']:.1f} | "
            f"{row['peak_rss'] / 2**20:.0f} | {row['bytes'] / 2**10:.0f} | {raw / max(row['bytes'], 1):.2f}x |"
        )
    lines += [
        "",
        "`blockfs2jp2k psnr40` checks each plane by decoding it (PSNR against the data's bit depth), so it "
        "encodes and decodes at least once per plane. Its files are tiny because the synthetic data is a "
        "smooth background plus shot noise well below 40 dB of the 12-bit peak: the noise is what it drops. "
        "`blockfs2jp2k htj2k` writes lossless HTJ2K codestreams (.j2c) with imagecodecs (OpenJPH).",
        "",
        "## All runs",
        "",
        "| method | run times (s) (1-minute load average before the run) |",
        "| --- | --- |",
    ]
    for m, r in rows.items():
        times = ", ".join(f"{row['seconds']:.2f} ({row.get('load_before', float('nan')):.1f})" for row in r)
        lines.append(f"| {m} | {times} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024], metavar=("Z", "Y", "X"))
    p.add_argument("--workdir", default="/tmp/blockfs-bench-export", help="Where the volume and outputs go.")
    p.add_argument("--level", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--jp2-planes", type=int, default=32)
    p.add_argument("--tiff-only", action="store_true", help="Measure only the TIFF methods.")
    p.add_argument("--report-only", action="store_true", help="Rewrite the report from the saved JSON.")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="Before each run, wait up to this long for a 1-minute load average below 1.")
    p.add_argument("--no-write", action="store_true", help="Print the report instead of writing it.")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--volume", help=argparse.SUPPRESS)
    p.add_argument("--zarr", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.volume, args.zarr, args.out, args.level, args.workers,
                                 args.jp2_planes)))
        return 0
    if args.report_only:
        saved = json.loads(RAW.read_text())
        sys.argv[1:] = saved["argv"]
        args = p.parse_args(saved["argv"])
        RESULTS.write_text(report(saved["rows"], args, tuple(saved["shape"]), saved["load"]))
        print(f"wrote {RESULTS} from {RAW}", file=sys.stderr)
        return 0
    shape = tuple(args.shape)
    workdir = Path(args.workdir)
    volume = build_volume(workdir, shape)
    zarr = build_zarr(workdir, volume)
    methods = ["blockfs2tif", "tensorstore+tifffile", "tensorstore+tifffile maxworkers", "blockfs2tif no-fsync",
               "blockfs2jp2k lossless", "blockfs2jp2k psnr40", "blockfs2jp2k htj2k"]
    if args.tiff_only:
        methods = methods[:4]
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for m in methods:
            rows[m].append(measure(m, args, volume, zarr))
            load.append(os.getloadavg()[0])
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps({"argv": sys.argv[1:], "shape": list(shape), "load": load, "rows": rows}, indent=1))
    text = report(rows, args, shape, load)
    if args.no_write:
        print(text)
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
