"""Benchmark blockfs-serve against static files served by ``python -m http.server``.

Run by hand (loopback only, bounded requests and time)::

    python benchmarks/bench_serve.py [--requests 400] [--clients 8] [--rounds 2]

For each chunk size, a synthetic uint16 volume is written, exported with
``write_static_precomputed`` and served two ways, each in its own process:
``blockfs-serve`` (decodes blockfs blocks per request; once sending identity,
once gzip level 1 to clients that ask for it) and ``python -m http.server
--protocol HTTP/1.1`` over the static export (plain files, no decoding).
``--clients`` threads, each with one keep-alive ``http.client`` connection,
request the same shuffled list of chunk URLs; every response is checked for
its length. Servers run one after another, ``--rounds`` times interleaved, and
the median round is reported. Results go to ``benchmarks/results/serve.md``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blockfs_tasks.core import Directory
from blockfs_tasks.ingest.synthetic import SyntheticVolume
from blockfs_tasks.serve.static import write_static_precomputed

RESULTS = Path(__file__).resolve().parent / "results" / "serve.md"
TIME_LIMIT_S = 60.0  # per run, whatever --requests says


@dataclass
class Run:
    server: str
    block: int
    requests: int
    seconds: float
    bytes_received: int
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def make_volume(folder: Path, shape_zyx: tuple[int, int, int], block: int) -> Path:
    """A synthetic light-sheet volume (zstd, like real data) with cubic blocks."""
    path = folder / f"vol{block}.blockfs"
    z, y, x = shape_zyx
    d = Directory(x, y, z, np.uint16, str(path), block, block, block)
    d.create()
    data = SyntheticVolume(shape_zyx, "uint16", seed=1).slab(0, z)
    d.write_blocks(
        (
            (data[oz : oz + block, oy : oy + block, ox : ox + block], ox, oy, oz)
            for ox, oy, oz in d.grid.origins()
        ),
        os.cpu_count() or 1,
    )
    d.close()
    return path


def start(cmd: list[str], pattern: str) -> tuple[subprocess.Popen[str], int]:
    """Start a server process; return it and the port it prints."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]  # stdout=PIPE; drain it
            return proc, int(match[1])
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def blockfs_serve(volume: Path, zlib_only: bool = False) -> tuple[subprocess.Popen[str], int]:
    hide_isal = "sys.modules['isal'] = None; " if zlib_only else ""  # import isal -> ImportError
    code = f"import sys; {hide_isal}from blockfs_tasks.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    return start([sys.executable, "-c", code, str(volume), "--port", "0"], r"127\.0\.0\.1:(\d+)")


def static_serve(folder: Path) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--protocol", "HTTP/1.1",
           "--directory", str(folder), "0"]
    return start(cmd, r"port (\d+)")


def load(
    port: int, paths: list[str], sizes: dict[str, int], clients: int, per_client: int, gzip: bool
) -> tuple[int, float, int, list[float]]:
    """``clients`` threads, one keep-alive connection each, ``per_client`` requests each."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    received = [0] * clients
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}

    def client(i: int) -> None:
        order = paths[:]
        random.Random(i).shuffle(order)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        barrier.wait()
        try:
            for n in range(per_client):
                if time.monotonic() > deadline[0]:
                    break
                path = order[n % len(order)]
                t0 = time.perf_counter()
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                latencies[i].append((time.perf_counter() - t0) * 1000)
                if resp.status != 200 or (not gzip and len(body) != sizes[path]):
                    errors.append(f"{path}: {resp.status}, {len(body)} bytes")
                    return
                received[i] += len(body)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + TIME_LIMIT_S
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"bad responses: {errors[:3]}")
    flat = [x for lat in latencies for x in lat]
    return len(flat), seconds, sum(received), flat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=400, help="Requests per client per run (default: 400).")
    p.add_argument("--clients", type=int, default=8, help="Concurrent clients (default: 8).")
    p.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median is reported (default: 3).")
    p.add_argument("--blocks", type=int, nargs="+", default=[32, 64], help="Cubic block sizes (default: 32 64).")
    p.add_argument("--shape", type=int, nargs=3, default=[128, 512, 512], metavar=("Z", "Y", "X"))
    args = p.parse_args()

    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        for block in args.blocks:
            volume = make_volume(folder, tuple(args.shape), block)
            static = folder / f"static{block}"
            write_static_precomputed(str(volume), str(static))
            d = Directory.open(str(volume))
            paths, sizes = [], {}
            for name in sorted(os.listdir(static / "1_1_1")):
                path = f"/1_1_1/{name}"
                paths.append(path)
                sizes[path] = (static / "1_1_1" / name).stat().st_size
            stored = sum(int(s) for s in d.index["size"])
            print(f"block {block}^3: {len(paths)} chunks of {max(sizes.values()) / 1024:.0f} KiB raw, "
                  f"{stored / sum(sizes.values()):.2f} of raw stored", flush=True)
            by_server: dict[str, list[Run]] = {}
            for round_ in range(args.rounds):
                servers = [
                    ("blockfs-serve (identity)", partial(blockfs_serve, volume), False),
                    (f"blockfs-serve (gzip 1, {gzip_engine().split()[0]})", partial(blockfs_serve, volume), True),
                    ("http.server, static files", partial(static_serve, static), False),
                ]
                if gzip_engine().startswith("ISA-L"):
                    servers.insert(2, ("blockfs-serve (gzip 1, zlib)", partial(blockfs_serve, volume, True), True))
                for name, launch, gzip in servers:
                    proc, port = launch()
                    try:
                        load(port, paths[:16], sizes, args.clients, 4, gzip)  # warm up: connections, page cache
                        n, seconds, received, lat = load(port, paths, sizes, args.clients, args.requests, gzip)
                    finally:
                        proc.terminate()
                        proc.wait(timeout=30)
                    run = Run(name, block, n, seconds, received, lat)
                    by_server.setdefault(name, []).append(run)
                    print(f"  round {round_ + 1} {name:28} {run.rate:8.0f} req/s  p50 {run.percentile(50):6.2f} ms  "
                          f"p99 {run.percentile(99):6.2f} ms", flush=True)
            for runs in by_server.values():
                results.append(sorted(runs, key=lambda r: r.rate)[len(runs) // 2])

    write_report(results, args)
    print(f"wrote {RESULTS}")
    return 0


def gzip_engine() -> str:
    import importlib.util

    return "ISA-L igzip (isal installed)" if importlib.util.find_spec("isal") else "zlib (isal not installed)"


def write_report(results: list[Run], args: argparse.Namespace) -> None:
    lines = [
        "# blockfs-serve vs static files (loopback)",
        "",
        f"Run by hand: `python benchmarks/bench_serve.py` ({time.strftime('%Y-%m-%d')}, "
        f"Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, shared machine: numbers are noisy, compare the rows of one table).",
        "",
        f"Synthetic uint16 light-sheet volume, shape (z, y, x) {tuple(args.shape)}, zstd-5 blocks; "
        f"{args.clients} concurrent clients (threads, one keep-alive `http.client` connection each), "
        f"{args.requests} requests each over the same shuffled list of every chunk URL; median of {args.rounds} "
        "interleaved rounds. Servers and clients share the 2 cores. The static server is "
        "`python -m http.server --protocol HTTP/1.1` over `write_static_precomputed` output (no decoding). "
        f"gzip engine of blockfs-serve: {gzip_engine()}.",
        "",
        "| chunk | server | requests | req/s | MB/s received | p50 ms | p99 ms | vs static req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for block in sorted({r.block for r in results}):
        rows = [r for r in results if r.block == block]
        static = next(r for r in rows if r.server.startswith("http.server"))
        for r in rows:
            lines.append(
                f"| {block}^3 ({block ** 3 * 2 // 1024} KiB) | {r.server} | {r.requests} | {r.rate:.0f} | "
                f"{r.bytes_received / r.seconds / 1e6:.0f} | {r.percentile(50):.2f} | {r.percentile(99):.2f} | "
                f"{r.rate / static.rate:.2f}x |"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
