"""Where a random 64^3 block read spends its time, by Blosc level and decode threads (run by hand).

For zstd levels 2 and 5 (+ byte shuffle): a volume of the synthetic
light-sheet data, then 2000 random ``read_block`` calls (warm page cache),
and the same blocks taken apart: ``pread`` of the frame, its CRC-32C, and the
Blosc decode with 1 and with 2 threads (numcodecs' global Blosc pool, what
``read_block`` uses from the main thread). The Blosc internal block size
recorded in each frame decides how far one frame's decode can be split:
Blosc splits at internal-block boundaries only. tensorstore's read of the
same block at the same level runs beside it, and ``read_block`` from a
thread that is not the main one (a server's request thread: numcodecs then
decodes on one Blosc thread). A second table tries the Blosc internal block
sizes a writer could force (auto, 32, 64, 128 KiB): ratio, encode speed on
one core, decode with 1 and 2 threads. Results:
``benchmarks/results/block_latency.md`` and ``.json``.

    python benchmarks/bench_block_latency.py [--shape 128 1024 1024] [--reads 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OtherLoad, build_volume, machine_facts, markdown_table, write_results
from numcodecs import blosc

from blockfs_tasks.core import Directory
from blockfs_tasks.core.codec import checksum


def median_us(fn: Callable[[tuple[int, int, int]], object], origins: list[tuple[int, int, int]]) -> float:
    times = []
    for o in origins:
        t0 = time.perf_counter()
        fn(o)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def measure_level(level: int, volume: np.ndarray, folder: str, origins: list[tuple[int, int, int]]) -> list[list[str]]:
    """The rows of one zstd level: read_block, its parts and tensorstore's read, as medians."""
    z, y, x = volume.shape
    rows = []
    path = os.path.join(folder, f"l{level}.blockfs")
    d = Directory(x, y, z, volume.dtype, path, compression_level=level)
    d.create()
    d.write_blocks(((volume[k : k + 64, j : j + 64, i : i + 64], i, j, k) for i, j, k in d.grid.origins()), 2)
    d.close()
    r = Directory.open(path)
    reader = r._range_reader()
    if reader is None:
        raise SystemExit("a local volume was expected")
    frames = {}
    for o in set(origins):
        e = r.index[r.grid.position(*o)]
        frames[o] = (int(e["file"]) - 1, int(e["offset"]), int(e["size"]))
    out = np.empty((64, 64, 64), volume.dtype)
    data = {o: os.pread(reader.fd(f), s, off) for o, (f, off, s) in frames.items()}
    blocksize = int.from_bytes(next(iter(data.values()))[8:12], "little")

    import tensorstore as ts

    store = ts.open({
        "driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(folder, f"ts{level}")},
        "metadata": {
            "shape": list(volume.shape), "data_type": "uint16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [64, 64, 64]}},
            "chunk_key_encoding": {"name": "default"},
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                       {"name": "blosc", "configuration": {"cname": "zstd", "clevel": level,
                                                           "shuffle": "shuffle", "typesize": 2}}],
            "fill_value": 0},
    }, create=True, delete_existing=True).result()
    store.write(volume).result()
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                    "path": os.path.join(folder, f"ts{level}")}}).result()
    measured = {}
    for nthreads in (1, 2):
        blosc.set_nthreads(nthreads)
        measured[f"read_block, Blosc {nthreads} thread(s)"] = median_us(lambda o: r.read_block(*o), origins)
        measured[f"decode only, {nthreads} thread(s)"] = median_us(
            lambda o: blosc.decompress(data[o], out), origins)
    in_thread: dict[str, float] = {}
    worker = threading.Thread(target=lambda: in_thread.update(us=median_us(lambda o: r.read_block(*o), origins)))
    worker.start()
    worker.join()
    measured["read_block from another thread (Blosc 1 thread)"] = in_thread["us"]
    measured["pread only"] = median_us(
        lambda o: os.pread(reader.fd(frames[o][0]), frames[o][2], frames[o][1]), origins)
    measured["CRC-32C only"] = median_us(lambda o: checksum(data[o]), origins)
    measured["tensorstore block read"] = median_us(
        lambda o: store[o[2] : o[2] + 64, o[1] : o[1] + 64, o[0] : o[0] + 64].read().result(), origins)
    for name, us in measured.items():
        rows.append([f"zstd-{level} (Blosc blocksize {blocksize // 1024} KiB)", name, f"{us:.0f}",
                     f"{us / measured['tensorstore block read']:.2f}x"])
    return rows


def blocksize_rows(level: int, volume: np.ndarray, n_blocks: int = 256) -> list[list[str]]:
    """Ratio, one-core encode speed and decode medians of the Blosc internal block sizes a writer could force."""
    import imagecodecs

    z, y, x = volume.shape
    origins = [(i, j, k) for k in range(0, z, 64) for j in range(0, y, 64) for i in range(0, x, 64)][:n_blocks]
    blocks = [np.ascontiguousarray(volume[k : k + 64, j : j + 64, i : i + 64]) for i, j, k in origins]
    raw = sum(b.nbytes for b in blocks)
    out = np.empty((64, 64, 64), volume.dtype)
    rows = []
    for forced in (0, 32768, 65536, 131072):
        t0 = time.thread_time()
        frames = [imagecodecs.blosc_encode(b, level=level, compressor="zstd", shuffle=1, typesize=b.itemsize,
                                           numthreads=1, blocksize=forced) for b in blocks]
        encode = raw / (time.thread_time() - t0) / 1e6
        chosen = int.from_bytes(frames[0][8:12], "little")
        decode = {}
        numbered = [(i, 0, 0) for i in range(len(frames))]
        for nthreads in (1, 2):
            blosc.set_nthreads(nthreads)
            decode[nthreads] = median_us(lambda i, frames=frames: blosc.decompress(frames[i[0]], out), numbered)
        rows.append([f"zstd-{level}", f"{chosen // 1024} KiB" + (" (Blosc's choice)" if not forced else ""),
                     f"{raw / sum(map(len, frames)):.3f}", f"{encode:.0f}", f"{decode[1]:.0f}", f"{decode[2]:.0f}"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[128, 1024, 1024], metavar=("Z", "Y", "X"))
    p.add_argument("--reads", type=int, default=2000)
    p.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="folder of block_latency.md and .json (default benchmarks/results)")
    args = p.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-latency-")
    facts = machine_facts(folder, ["numpy", "numcodecs", "tensorstore"])
    rows = []
    try:
        volume = build_volume(args.shape)
        z, y, x = volume.shape
        rng = np.random.default_rng(1234)
        grid = [(i, j, k) for i in range(0, x, 64) for j in range(0, y, 64) for k in range(0, z, 64)]
        origins = [grid[int(i)] for i in rng.integers(0, len(grid), args.reads)]
        sizes = []
        with OtherLoad() as load:
            for level in (2, 5):
                rows += measure_level(level, volume, folder, origins)
                sizes += blocksize_rows(level, volume)
        blosc.set_nthreads(min(8, os.cpu_count() or 1))
        md = [
            "# Random 64^3 block reads: where the time goes", "",
            f"`python benchmarks/bench_block_latency.py --shape {' '.join(map(str, args.shape))}` — "
            f"{time.strftime('%Y-%m-%d %H:%M')}. {args.reads} random reads (seed 1234), warm page cache, medians. "
            f"2 cores; other processes kept {load.cores:.2f} cores busy during the run (load average at start "
            f"{facts.get('load average at start (1/5/15 min)')}, at end {os.getloadavg()[0]:.2f}).", "",
            markdown_table(["volume", "what", "median µs", "/ tensorstore"], rows), "",
            "## Blosc internal block size (forced at write time)", "",
            "256 blocks of the same volume; encode MB/s on one core (raw bytes / CPU s); decode medians with "
            "numcodecs' global Blosc pool at 1 and 2 threads.", "",
            markdown_table(["level", "Blosc block", "ratio", "encode MB/s", "decode 1 thread µs",
                            "decode 2 threads µs"], sizes), "",
            *(f"- {k}: {v}" for k, v in facts.items()), "",
        ]
        result: dict[str, Any] = {
            "shape_zyx": args.shape, "reads": args.reads, "others_cores": load.cores,
            "rows": [dict(zip(["volume", "what", "median_us", "vs_tensorstore"], r, strict=True)) for r in rows],
            "blocksizes": [dict(zip(["level", "blosc_block", "ratio", "encode_mb_s", "decode_1_us", "decode_2_us"], r,
                                    strict=True)) for r in sizes],
            "machine": facts,
        }
        write_results(args.results, "block_latency", result, md)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
