"""The pyramid's reductions and where a Downsample's time goes, against tinybrain.

1. **Kernels** on real data (128^3 regions of the synthetic light-sheet volume,
   uint16): our 2x2x2 mean (the whole-window fast path, and the general path
   it replaced), tinybrain's ``downsample_with_averaging`` (1 and 3 mips),
   and the ROUNDING of each against the exact mean (voxels that differ from
   round-half-up, and the mean bias after 1..4 mips). For segmentations
   (uint32 / uint64 labels): our mode (ties to the smallest label) against
   tinybrain's ``downsample_segmentation`` (COUNTLESS), and how often they
   agree.
2. **Stages of a Downsample** in this process, one thread, on a volume written
   with the live API: read + decode of level 0, the reductions, the encoding of
   the levels (with the volume's codec), and the rest; then the same volume
   through ``luigi --workers 2`` ``Downsample --volume``, against
   ``BuildDirectory`` of the same volume from TIFF planes (the ratio the
   target is about: Downsample <= 25% of ingest).

Run::

    python benchmarks/bench_pyramid.py [--shape 512 1024 1024]

Results: ``benchmarks/results/pyramid.md`` and ``.json``. The machine is shared;
the load average is recorded; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_end_to_end import RESULTS, measure, pipeline_codec, write_stack
from common import machine_facts, markdown_table

from blockfs_tasks.core import Directory
from blockfs_tasks.core.batch import build_directory
from blockfs_tasks.core.codec import make_codec
from blockfs_tasks.core.encode import encode_block
from blockfs_tasks.ingest import batch_blocks, open_source, plan_batches, plan_volume, write_batch_blocks
from blockfs_tasks.ingest.synthetic import SyntheticVolume
from blockfs_tasks.pyramid import downsample_mean, downsample_mode, level_spec, plan_pyramid
from blockfs_tasks.pyramid.prereduce import Prereduce, level1_reader, level1_slab
from blockfs_tasks.pyramid.reduce import _mean_general

logger = logging.getLogger("bench_pyramid")


def best_ms(f: Callable[[], Any], repeat: int = 7) -> float:
    """Fastest of ``repeat`` runs, ms (the shared machine adds noise only upwards)."""
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def kernels() -> dict[str, Any]:
    import tinybrain

    volume = SyntheticVolume((128, 512, 512), seed=1).slab(0, 128)
    regions = [np.ascontiguousarray(volume[:, y : y + 128, x : x + 128]) for y in (0, 256) for x in (0, 256)]
    r = regions[0]
    xyz = r.T  # tinybrain takes (x, y, z) arrays: the same memory, Fortran order
    out: dict[str, Any] = {
        "mean_fast_ms": best_ms(lambda: downsample_mean(r, (2, 2, 2))),
        "mean_general_ms": best_ms(lambda: _mean_general(r, (2, 2, 2))),
        "tinybrain_mean_ms": best_ms(lambda: tinybrain.downsample_with_averaging(xyz, (2, 2, 2), num_mips=1)),
        "mean_fast_3_mips_ms": best_ms(
            lambda: downsample_mean(downsample_mean(downsample_mean(r, (2, 2, 2)), (2, 2, 2)), (2, 2, 2))),
        "tinybrain_3_mips_ms": best_ms(lambda: tinybrain.downsample_with_averaging(xyz, (2, 2, 2), num_mips=3)),
    }
    # rounding on real data: differing voxels at mip 1, bias against the exact (float) mean at mips 1..4
    differ, bias_ours, bias_tb = [], {k: [] for k in range(1, 5)}, {k: [] for k in range(1, 5)}
    for region in regions:
        ours = region
        tb = tinybrain.downsample_with_averaging(region.T, (2, 2, 2), num_mips=4)
        exact = region.astype(np.float64)
        for mip in range(1, 5):
            ours = downsample_mean(ours, (2, 2, 2))
            exact = sum(exact[a::2, b::2, c::2] for a in (0, 1) for b in (0, 1) for c in (0, 1)) / 8
            theirs = np.asarray(tb[mip - 1]).T
            bias_ours[mip].append(float(np.mean(ours - exact)))
            bias_tb[mip].append(float(np.mean(theirs - exact)))
            if mip == 1:
                differ.append(float(np.mean(ours != theirs)))
    out["mip1_voxels_differing"] = float(np.mean(differ))
    out["bias_vs_exact_mean"] = {
        f"mip {m}": {"ours (half up)": float(np.mean(bias_ours[m])), "tinybrain (floor)": float(np.mean(bias_tb[m]))}
        for m in range(1, 5)
    }
    # segmentations: blobs of labels (a coarse random field upsampled, shifted per axis)
    rng = np.random.default_rng(2)
    for dtype in ("uint32", "uint64"):
        coarse = rng.integers(1, 2**31, (20, 20, 20)).astype(dtype)
        if dtype == "uint64":
            coarse = coarse * np.uint64(2**32 + 1)
        labels = np.ascontiguousarray(coarse.repeat(7, 0).repeat(7, 1).repeat(7, 2)[3:131, 5:133, 1:129])
        lxyz = labels.T
        ours = downsample_mode(labels, (2, 2, 2))
        theirs = np.asarray(tinybrain.downsample_segmentation(lxyz, (2, 2, 2), num_mips=1)[0]).T
        out[f"mode_{dtype}_ms"] = best_ms(lambda labels=labels: downsample_mode(labels, (2, 2, 2)), 3)
        out[f"tinybrain_segmentation_{dtype}_ms"] = best_ms(
            lambda lxyz=lxyz: tinybrain.downsample_segmentation(lxyz, (2, 2, 2), num_mips=1), 3)
        out[f"mode_{dtype}_voxels_differing"] = float(np.mean(ours != theirs))
    return out


def _encode_levels(data: np.ndarray, specs: list[Any], first: int, n: int) -> tuple[float, float]:
    """Reduce ``data`` (level ``first - 1``) to levels ``first .. first + n - 1`` and encode their blocks:
    (reduce CPU s, encode CPU s)."""
    t_reduce = t_encode = 0.0
    for level in range(first, first + n):
        t0 = time.process_time()
        data = downsample_mean(data, (2, 2, 2))
        t1 = time.process_time()
        t_reduce += t1 - t0
        for bz in range(0, data.shape[0], 64):
            for by in range(0, data.shape[1], 64):
                for bx in range(0, data.shape[2], 64):
                    block = np.ascontiguousarray(data[bz : bz + 64, by : by + 64, bx : bx + 64])
                    encode_block(specs[level - 1], block, 0, 0, 0, "")
        t_encode += time.process_time() - t1
    return t_reduce, t_encode


def stages(folder: str, shape: tuple[int, int, int]) -> dict[str, Any]:
    """In this process, CPU seconds (``time.process_time``: the reader's decode threads count too;
    wall time on the shared machine would measure the other engineers' load): where a Downsample's time goes,
    decoding level 0 again (``Downsample --volume``) or reading level 1 from the ingest batches' slabs."""
    z, y, x = shape
    codec = pipeline_codec()  # the pipeline's codec, as BuildDirectory writes level 0
    dest = os.path.join(folder, "batches.blockfs")
    t_prereduce = 0.0
    with open_source(f"synthetic:{z}x{y}x{x}:uint16:seed=0") as src:
        spec = plan_volume(src, (64, 64, 64), make_codec(codec["cname"], codec["clevel"], 1))
        plan = plan_batches(spec.grid, 2, min_tasks=32)
        for number in range(plan.n_batches):  # as BuildDirectory's batches do when a pyramid is asked for
            slab = level1_slab(dest, number, spec, {"mode": "mean"})
            assert slab is not None

            def add(z0: int, z1: int, y0: int, y1: int, data: np.ndarray, slab: Any = slab) -> None:
                nonlocal t_prereduce
                t0 = time.process_time()
                slab.add(z0, z1, y0, y1, data)
                t_prereduce += time.process_time() - t0

            blocks = slab.around(batch_blocks(src, spec, plan, number, None, add))
            write_batch_blocks(dest, spec, number, blocks, plan.describe(number))
    build_directory(dest, spec, range(plan.n_batches))
    src_dir = Directory.open(dest)
    plan_ = plan_pyramid(dest, os.path.join(folder, "pyr"))
    specs = [level_spec(src_dir.spec, level) for level in plan_.levels[1:]]
    region = 256
    t_read = t_reduce = t_encode = t_slab = t_reduce_s = t_encode_s = 0.0
    t0 = time.process_time()
    reader = level1_reader(src_dir, Prereduce("mean", (2, 2, 2)))
    t_slab += time.process_time() - t0
    assert reader is not None
    for z0 in range(0, z, region):
        for y0 in range(0, y, region):
            for x0 in range(0, x, region):
                t0 = time.process_time()
                data = src_dir[z0 : z0 + region, y0 : y0 + region, x0 : x0 + region]
                t_read += time.process_time() - t0
                r, e = _encode_levels(data, specs, 1, 2)  # two levels per read, as the default groups do
                t_reduce, t_encode = t_reduce + r, t_encode + e
                t0 = time.process_time()
                hz, hy, hx = (-(-n // 2) for n in data.shape)
                level1 = reader(z0 // 2, z0 // 2 + hz, y0 // 2, y0 // 2 + hy, x0 // 2, x0 // 2 + hx)
                t_slab += time.process_time() - t0
                assert level1 is not None and np.array_equal(level1, downsample_mean(data, (2, 2, 2)))
                t0 = time.process_time()
                for bz in range(0, hz, 64):  # level 1's blocks are encoded as they come
                    for by in range(0, hy, 64):
                        for bx in range(0, hx, 64):
                            block = np.ascontiguousarray(level1[bz : bz + 64, by : by + 64, bx : bx + 64])
                            encode_block(specs[0], block, 0, 0, 0, "")
                t_encode_s += time.process_time() - t0
                r, e = _encode_levels(level1, specs, 2, 1)
                t_reduce_s, t_encode_s = t_reduce_s + r, t_encode_s + e
    return {"read_decode_level0_s": t_read, "reduce_levels_1_2_s": t_reduce, "encode_levels_1_2_s": t_encode,
            "prereduce_in_ingest_s": t_prereduce, "read_level1_slabs_s": t_slab, "reduce_level_2_s": t_reduce_s,
            "encode_levels_1_2_from_slabs_s": t_encode_s, "codec": codec}


def luigi_rounds(folder: str, stack: str, shape: tuple[int, int, int], repeat: int) -> dict[str, Any]:
    """BuildDirectory alone, Downsample --volume alone, and both in one run, ``repeat`` interleaved rounds;
    the round with the least CPU of each is kept (the machine's load only adds)."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for tool in ("blockfs_ingest", "blockfs_downsample", "blockfs"):
            out = os.path.join(folder, "blockfs" if tool != "blockfs" else "one_run")
            if tool != "blockfs_downsample":
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
            else:
                shutil.rmtree(os.path.join(out, "pyramid"), ignore_errors=True)
            result = measure(tool, stack, out, shape)
            logger.info("%s: %s", tool, result)
            if "error" not in result and (tool not in best or result["cpu_s"] < best[tool]["cpu_s"]):
                best[tool] = result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeat", type=int, default=2, help="Interleaved rounds of the Luigi runs (least CPU kept).")
    parser.add_argument("--luigi-only", action="store_true", help="Skip the kernels and the in-process stages.")
    args = parser.parse_args()
    shape: tuple[int, int, int] = (args.shape[0], args.shape[1], args.shape[2])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder = tempfile.mkdtemp(prefix="bench-pyramid-")
    try:
        facts = machine_facts(folder, ["tinybrain", "numpy", "numcodecs", "luigi"])
        k = {} if args.luigi_only else kernels()
        logger.info("kernels: %s", k)
        s = {} if args.luigi_only else stages(folder, shape)
        logger.info("stages: %s", s)
        stack = os.path.join(folder, "stack")
        write_stack(stack, shape)
        runs = luigi_rounds(folder, stack, shape, args.repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = (kernel_lines(k, s, shape) if k else []) + luigi_lines(runs, args.repeat) + [
        "",
        "Machine (shared with other engineers' test runs):",
        "",
        *[f"- {key}: {v}" for key, v in facts.items()],
        f"- load average after: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
    ]
    os.makedirs(RESULTS, exist_ok=True)
    name = "pyramid_luigi" if args.luigi_only else "pyramid"
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump({"shape_zyx": list(shape), "kernels": k, "stages": s, "luigi": runs, "machine": facts}, f, indent=1)
    print("\n".join(lines))


def luigi_lines(runs: dict[str, dict[str, Any]], repeat: int) -> list[str]:
    """The Luigi table: each stage alone, both in one run, and the pyramid's cost against ingest both ways."""
    labels = {"blockfs_ingest": "BuildDirectory alone (TIFF planes -> level 0)",
              "blockfs_downsample": "Downsample --volume alone (levels 1.., level 0 decoded again)",
              "blockfs": "Downsample + BuildDirectory in one run (level 1 from the ingest batches' slabs)"}
    rows = [[labels[t], f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['peak_process_mib']:.0f}",
             f"{' / '.join(f'{v:.2f}' for v in r['loadavg_before'])}"] for t, r in runs.items()]
    lines = ["", f"## Through Luigi (--workers 2, pipeline defaults), same stack (least CPU of {repeat} rounds)", "",
             markdown_table(["run", "wall s", "CPU s", "peak MiB largest process", "load before"], rows), ""]
    i, d, both = runs.get("blockfs_ingest"), runs.get("blockfs_downsample"), runs.get("blockfs")
    if i and d:
        lines.append(f"Downsample --volume alone / BuildDirectory alone: wall {d['wall_s'] / i['wall_s']:.2f}, "
                     f"CPU {d['cpu_s'] / i['cpu_s']:.2f} (target <= 0.25).")
    if i and both:
        lines.append(f"The pyramid's marginal cost inside one run, (one run - BuildDirectory alone) / BuildDirectory "
                     f"alone: wall {(both['wall_s'] - i['wall_s']) / i['wall_s']:.2f}, "
                     f"CPU {(both['cpu_s'] - i['cpu_s']) / i['cpu_s']:.2f} (target <= 0.25; it counts the "
                     "pre-reduction the ingest batches do).")
    return lines


SLAB_STAGES = ("prereduce_in_ingest_s", "read_level1_slabs_s", "reduce_level_2_s", "encode_levels_1_2_from_slabs_s")


def kernel_lines(k: dict[str, Any], s: dict[str, Any], shape: tuple[int, int, int]) -> list[str]:
    """The kernels' table, the rounding notes and the in-process stages."""
    return [
        "# Pyramid: reductions, rounding, and where a Downsample's time goes",
        "",
        "## Kernels: one 128^3 uint16 region of the synthetic light-sheet volume, 2x2x2 (best of 7, ms)",
        "",
        markdown_table(["reduction", "ms", "vs ours"], [
            ["ours, mean, whole-window fast path (this change)", f"{k['mean_fast_ms']:.2f}", "1.00x"],
            ["ours, mean, general path (before)", f"{k['mean_general_ms']:.2f}",
             f"{k['mean_general_ms'] / k['mean_fast_ms']:.2f}x"],
            ["tinybrain 1.7 downsample_with_averaging", f"{k['tinybrain_mean_ms']:.2f}",
             f"{k['tinybrain_mean_ms'] / k['mean_fast_ms']:.2f}x"],
            ["ours, 3 mips chained", f"{k['mean_fast_3_mips_ms']:.2f}", ""],
            ["tinybrain, 3 mips", f"{k['tinybrain_3_mips_ms']:.2f}", ""],
            ["ours, mode, uint32 labels", f"{k['mode_uint32_ms']:.1f}", "1.00x"],
            ["tinybrain downsample_segmentation (COUNTLESS), uint32",
             f"{k['tinybrain_segmentation_uint32_ms']:.1f}",
             f"{k['tinybrain_segmentation_uint32_ms'] / k['mode_uint32_ms']:.2f}x"],
            ["ours, mode, uint64 labels", f"{k['mode_uint64_ms']:.1f}", "1.00x"],
            ["tinybrain downsample_segmentation, uint64", f"{k['tinybrain_segmentation_uint64_ms']:.1f}",
             f"{k['tinybrain_segmentation_uint64_ms'] / k['mode_uint64_ms']:.2f}x"],
        ]),
        "",
        f"Rounding: tinybrain's 2x2x2 uint16 mean is the FLOOR of the mean; ours rounds half up. On this data "
        f"{100 * k['mip1_voxels_differing']:.1f}% of mip-1 voxels differ (by 1). Mean bias against the exact "
        f"mean, per mip: " + "; ".join(
            f"{m}: ours {v['ours (half up)']:+.3f}, tinybrain {v['tinybrain (floor)']:+.3f}"
            for m, v in k["bias_vs_exact_mean"].items()) + ".",
        f"Mode: COUNTLESS breaks ties its own way: {100 * k['mode_uint32_voxels_differing']:.2f}% (uint32) and "
        f"{100 * k['mode_uint64_voxels_differing']:.2f}% (uint64) of mip-1 voxels differ from ours "
        "(most frequent label, ties to the smallest).",
        "",
        f"## Stages of a Downsample of {shape[0]} x {shape[1]} x {shape[2]} uint16, in this process, CPU s",
        "",
        markdown_table(["level 1 from", "pre-reduce in ingest", "read level 0 / slabs", "reduce", "encode levels 1-2",
                        "total"], [
            ["decoding level 0 again", "-", f"{s['read_decode_level0_s']:.2f}", f"{s['reduce_levels_1_2_s']:.2f}",
             f"{s['encode_levels_1_2_s']:.2f}",
             f"{s['read_decode_level0_s'] + s['reduce_levels_1_2_s'] + s['encode_levels_1_2_s']:.2f}"],
            ["the ingest batches' slabs", f"{s['prereduce_in_ingest_s']:.2f}", f"{s['read_level1_slabs_s']:.2f}",
             f"{s['reduce_level_2_s']:.2f}", f"{s['encode_levels_1_2_from_slabs_s']:.2f}",
             f"{sum(s[key] for key in SLAB_STAGES):.2f}"],
        ]),
        "",
        f"Codec: {s['codec']}. 'pre-reduce in ingest' is the level-1 reduction and slab writes the ingest batches "
        "do from the planes they read (pyramid/prereduce.py).",
    ]


if __name__ == "__main__":
    main()
