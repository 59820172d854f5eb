"""Remote reads from S3 (moto_server on loopback): blockfs vs tensorstore (zarr3, zarr3 sharded, sharded
neuroglancer_precomputed) vs zarr-python over s3fs, on the same data and codec (run by hand).

Every store holds the same synthetic uint16 volume in 64^3 chunks, Blosc zstd level 5 with byte shuffle
(neuroglancer_precomputed has no Blosc: raw chunks, gzip shard data). Reads go through a counting proxy in
front of moto_server, which sees every request and every byte answered. For each store:

* open: requests to open the array;
* random blocks: N distinct random blocks read one after another (each store opened fresh, with its
  caches: tensorstore's cache pool keeps shard and minishard indexes, blockfs keeps index pages);
* full read: the whole volume in one call, from a fresh open.

Reported: requests per block, blocks/s, bytes fetched per block and beyond the stored chunk bytes
(fetched - blocks x the store's stored bytes per chunk). The machine is shared with other engineers'
jobs: the load average and the other processes' CPU use are recorded.

    python benchmarks/bench_remote.py [--shape-zyx 256 512 512] [--random 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import OtherLoad, build_volume, machine_facts, markdown_table  # noqa: E402
from remote.servers import S3_ENV, CountingProxy, MotoServer, s3_options  # noqa: E402

BLOCK = 64
SHARD = 256  # zarr3 shards and blockfs block files hold 4 x 4 x 4 chunks: objects of the same size
BUCKET = "bench-remote"


def s3_kvstore(endpoint: str, path: str) -> dict[str, Any]:
    return {"driver": "s3", "bucket": BUCKET, "path": path, "endpoint": endpoint, "aws_region": "us-east-1"}


BLOSC = {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "shuffle", "typesize": 2}}
BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


def ts_specs(shape: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """tensorstore specs (without kvstore) of the three tensorstore stores."""
    z, y, x = shape
    shard = [min(SHARD, s) for s in shape]
    return {
        "tensorstore zarr3": {
            "driver": "zarr3",
            "metadata": {"shape": list(shape), "data_type": "uint16", "codecs": [BYTES, BLOSC],
                         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [BLOCK] * 3}}},
        },
        "tensorstore zarr3 sharded": {
            "driver": "zarr3",
            "metadata": {
                "shape": list(shape), "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard}},
                "codecs": [{"name": "sharding_indexed", "configuration": {
                    "chunk_shape": [BLOCK] * 3, "codecs": [BYTES, BLOSC],
                    "index_codecs": [BYTES, {"name": "crc32c"}], "index_location": "end"}}],
            },
        },
        "tensorstore precomputed sharded": {
            "driver": "neuroglancer_precomputed",
            "multiscale_metadata": {"data_type": "uint16", "num_channels": 1, "type": "image"},
            "scale_metadata": {
                "size": [x, y, z], "chunk_size": [BLOCK] * 3, "encoding": "raw", "resolution": [1, 1, 1],
                "sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 3, "hash": "identity",
                             "minishard_bits": 3, "shard_bits": 2, "minishard_index_encoding": "gzip",
                             "data_encoding": "gzip"},
            },
        },
    }


def write_stores(data: np.ndarray, moto: MotoServer, folder: str) -> dict[str, str]:
    """Write every store into the bucket (straight to moto, not through the proxy); return their paths."""
    import s3fs
    import tensorstore as ts
    import zarr
    from zarr.codecs import BloscCodec

    from blockfs_tasks.core import BlockCodec, BlockGrid, VolumeSpec
    from blockfs_tasks.core.batch import BatchWriter, build_directory
    from blockfs_tasks.core.remote_copy import copy_remote

    paths = {}
    z, y, x = data.shape
    local = os.path.join(folder, "vol.blockfs")
    spec = VolumeSpec(BlockGrid((x, y, z), (BLOCK,) * 3), np.dtype("uint16"), BlockCodec("zstd", 5), {})
    shard = [min(SHARD, s) for s in data.shape]
    regions = [(sz, sy, sx) for sz in range(0, z, shard[0]) for sy in range(0, y, shard[1])
               for sx in range(0, x, shard[2])]
    for k, (sz, sy, sx) in enumerate(regions):  # one batch (block file) per shard region: same object sizes
        with BatchWriter(local, spec, k) as writer:
            for bz in range(sz, min(z, sz + shard[0]), BLOCK):
                for by in range(sy, min(y, sy + shard[1]), BLOCK):
                    for bx in range(sx, min(x, sx + shard[2]), BLOCK):
                        writer.write_block(data[bz:bz + BLOCK, by:by + BLOCK, bx:bx + BLOCK], bx, by, bz)
    build_directory(local, spec, range(len(regions)))
    paths["blockfs"] = copy_remote(local, f"s3://{BUCKET}/blockfs/", s3_options(moto.endpoint))
    for name, spec in ts_specs(data.shape).items():
        path = name.replace(" ", "-") + "/"
        arr = ts.open({**spec, "kvstore": s3_kvstore(moto.endpoint, path), "create": True,
                       "delete_existing": True}).result()
        arr[...] = data.transpose(2, 1, 0)[..., None] if spec["driver"] == "neuroglancer_precomputed" else data
        paths[name] = path
    store = zarr.storage.FsspecStore.from_url(f"s3://{BUCKET}/zarr-python/", storage_options=s3_options(moto.endpoint))
    arr = zarr.create_array(store, shape=data.shape, chunks=(BLOCK,) * 3, dtype="uint16",
                            compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")], zarr_format=3)
    arr[...] = data
    paths["zarr-python (s3fs)"] = "zarr-python/"
    del s3fs
    return paths


def stored_bytes(moto: MotoServer, prefix: str) -> int:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options(moto.endpoint), skip_instance_cache=True)
    return sum(int(info["size"]) for info in fs.find(f"{BUCKET}/{prefix.rstrip('/')}", detail=True).values())


Reader = tuple[Callable[[int, int, int], np.ndarray], Callable[[], np.ndarray]]


def open_reader(name: str, path: str, spec: dict[str, Any] | None, endpoint: str) -> Reader:
    """(read one block at (z, y, x) voxel origin, read everything) for a store, opened now."""
    if name == "blockfs":
        from blockfs_tasks.core import Directory

        d = Directory.open(path, storage_options=s3_options(endpoint))
        return (lambda z, y, x: d.read_block(x, y, z)), (lambda: d[:, :, :])
    if name.startswith("zarr-python"):
        import zarr

        store = zarr.storage.FsspecStore.from_url(f"s3://{BUCKET}/{path}", storage_options=s3_options(endpoint),
                                                  read_only=True)
        arr = zarr.open_array(store, mode="r")
        return (lambda z, y, x: arr[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK]), (lambda: arr[...])
    import tensorstore as ts

    context = {"cache_pool": {"total_bytes_limit": 64 << 20}}
    arr = ts.open({"driver": spec["driver"], "kvstore": s3_kvstore(endpoint, path), "context": context}).result()
    if spec["driver"] == "neuroglancer_precomputed":
        return (
            (lambda z, y, x: arr[x:x + BLOCK, y:y + BLOCK, z:z + BLOCK, 0].read().result().transpose(2, 1, 0)),
            (lambda: arr[..., 0].read().result()),
        )
    return (lambda z, y, x: arr[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK].read().result()), (lambda: arr.read().result())


def measure(proxy: CountingProxy, fn: Callable[[], Any]) -> tuple[float, int, int, Any]:
    """(seconds, GET/HEAD requests, bytes answered, result) of ``fn``."""
    proxy.log.take()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    log = proxy.log.take()
    return seconds, len(log), sum(r.body_bytes for r in log), result


def bench_store(
    name: str, path: str, spec: dict[str, Any] | None, data: np.ndarray, picks: list[tuple[int, int, int]],
    n_chunks: int, proxy: CountingProxy, per_chunk: float,
) -> dict[str, Any]:
    """Open, random block reads and a full read of one store, counted at the proxy; the data checked."""
    open_s, open_req, open_bytes, (read_one, _) = measure(proxy, lambda: open_reader(name, path, spec, proxy.endpoint))

    def random_reads() -> None:
        for z, y, x in picks:
            if not np.array_equal(read_one(z, y, x), data[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK]):
                raise AssertionError(f"{name}: wrong data at (z, y, x) {(z, y, x)}")

    with OtherLoad() as load_random:
        rand_s, rand_req, rand_bytes, _ = measure(proxy, random_reads)
    _, _, _, (_, read_all) = measure(proxy, lambda: open_reader(name, path, spec, proxy.endpoint))
    with OtherLoad() as load_full:
        full_s, full_req, full_bytes, everything = measure(proxy, read_all)
    everything = np.asarray(everything)
    if everything.shape != data.shape:  # precomputed: x, y, z
        everything = everything.transpose(2, 1, 0)
    if not np.array_equal(everything, data):
        raise AssertionError(f"{name}: the full read differs from the data")
    n = len(picks)
    return {
        "open_requests": open_req, "open_bytes": open_bytes, "open_seconds": open_s,
        "stored_bytes_per_chunk": per_chunk,
        "random_blocks": n, "random_requests": rand_req, "random_requests_per_block": rand_req / n,
        "random_blocks_per_s": n / rand_s, "random_bytes_per_block": rand_bytes / n,
        "random_bytes_beyond_blocks_per_block": rand_bytes / n - per_chunk,
        "random_other_cores": load_random.cores,
        "full_requests": full_req, "full_requests_per_block": full_req / n_chunks, "full_seconds": full_s,
        "full_blocks_per_s": n_chunks / full_s, "full_bytes": full_bytes,
        "full_bytes_beyond_blocks": full_bytes - per_chunk * n_chunks, "full_other_cores": load_full.cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape-zyx", type=int, nargs=3, default=(256, 512, 512))
    parser.add_argument("--random", type=int, default=128, help="Random distinct blocks read one by one.")
    parser.add_argument("--out", default=str(HERE / "results" / "remote"))
    args = parser.parse_args()
    os.environ.update(S3_ENV)
    shape = tuple(args.shape_zyx)
    data = build_volume(shape, "uint16", seed=12)
    grid = [(z, y, x) for z in range(0, shape[0], BLOCK) for y in range(0, shape[1], BLOCK)
            for x in range(0, shape[2], BLOCK)]
    rng = np.random.default_rng(12)
    picks = [grid[i] for i in rng.choice(len(grid), min(args.random, len(grid)), replace=False)]
    facts = machine_facts(tempfile.gettempdir(), ["tensorstore", "zarr", "s3fs", "fsspec", "moto"])
    moto = MotoServer()
    proxy = CountingProxy(moto.port)
    rows, results = [], {}
    try:
        import s3fs

        s3fs.S3FileSystem(**s3_options(moto.endpoint), skip_instance_cache=True).mkdir(BUCKET)
        with tempfile.TemporaryDirectory() as folder:
            paths = write_stores(data, moto, folder)
        specs = ts_specs(shape)
        for name, path in paths.items():
            prefix = path.split("s3://" + BUCKET + "/")[-1].rsplit("vol.blockfs", 1)[0]
            r = results[name] = bench_store(name, path, specs.get(name), data, picks, len(grid), proxy,
                                            stored_bytes(moto, prefix) / len(grid))
            rows.append([
                name, r["open_requests"], f"{r['random_requests_per_block']:.2f}", f"{r['random_blocks_per_s']:.0f}",
                f"{r['random_bytes_beyond_blocks_per_block'] / 1024:.1f}", f"{r['full_requests_per_block']:.2f}",
                f"{r['full_blocks_per_s']:.0f}", f"{r['full_bytes_beyond_blocks'] / 2**20:.2f}",
                f"{r['stored_bytes_per_chunk'] / 1024:.0f}",
            ])
            print(name, json.dumps(r), flush=True)
    finally:
        proxy.stop()
        moto.stop()
    base = results["blockfs"]["random_blocks_per_s"]
    ratios = {n: base / r["random_blocks_per_s"] for n, r in results.items()}
    table = markdown_table(
        ["store", "open GETs", "random: GETs/block", "random: blocks/s", "random: KiB beyond block",
         "full: GETs/block", "full: blocks/s", "full: MiB beyond blocks", "stored KiB/chunk"], rows)
    md = [
        "# Remote reads from S3 (moto_server on loopback, through a counting proxy)",
        "",
        f"Volume (z, y, x) {list(shape)} uint16, {len(grid)} chunks of 64^3, Blosc zstd 5 byte shuffle "
        "(precomputed: raw chunks, gzip shard data). "
        f"Random: {len(picks)} distinct blocks read one by one after a fresh open; full: one read of everything "
        "after a fresh open.",
        "",
        table,
        "",
        "blockfs random-read throughput relative to each store (>1: blockfs faster): "
        + ", ".join(f"{n} {v:.2f}x" for n, v in ratios.items() if n != "blockfs"),
        "",
        "moto_server reads a whole object for each ranged GET (its cost grows with the object's size), so "
        "blockfs is written with one block file per 256^3 region, the size of a zarr3 shard; on S3 a ranged GET "
        "costs the same whatever the object's size. "
        "Bytes beyond blocks = bytes answered - blocks x the store's stored bytes per chunk (shard indexes "
        "included in that average). The proxy and moto are Python processes on the same 2 cores: absolute "
        "blocks/s are those of this loopback setup, the ratios and request counts are what carries over.",
        "",
        "Machine (shared with 4 other engineers' jobs):",
        "",
        *[f"- {k}: {v}" for k, v in facts.items()],
        f"- load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"shape_zyx": shape, "results": results, "machine": facts},
                                                   indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
