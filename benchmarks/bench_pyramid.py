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
from blockfs_tasks.core.encode import encode_block
from blockfs_tasks.ingest.synthetic import SyntheticVolume
from blockfs_tasks.pyramid import downsample_mean, downsample_mode, level_spec, plan_pyramid
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


def stages(folder: str, shape: tuple[int, int, int]) -> dict[str, Any]:
    """In this process, CPU seconds (``time.process_time``: the reader's decode threads count too;
    wall time on the shared machine would measure the other engineers' load): where a Downsample's time goes."""
    z, y, x = shape
    volume = SyntheticVolume(shape, seed=0)
    codec = pipeline_codec()  # the pipeline's codec, as BuildDirectory writes level 0
    d = Directory(x, y, z, np.uint16, os.path.join(folder, "live.blockfs"), compression=codec["cname"],
                  compression_level=codec["clevel"])
    d.create()
    for z0 in range(0, z, 64):
        slab = volume.slab(z0, min(z, z0 + 64))
        d.write_blocks(((slab[:, yy : yy + 64, xx : xx + 64], xx, yy, z0)
                        for yy in range(0, y, 64) for xx in range(0, x, 64)), n_threads=2)
    d.close()
    src = Directory.open(os.path.join(folder, "live.blockfs"))
    plan = plan_pyramid(src.directory_filename, os.path.join(folder, "pyr"))
    specs = [level_spec(src.spec, level) for level in plan.levels[1:]]
    t_read = t_reduce = t_encode = 0.0
    region = 256
    for z0 in range(0, z, region):
        for y0 in range(0, y, region):
            for x0 in range(0, x, region):
                t0 = time.process_time()
                data = src[z0 : z0 + region, y0 : y0 + region, x0 : x0 + region]
                t1 = time.process_time()
                t_read += t1 - t0
                for level in range(2):  # two levels per read, as the default groups do
                    t0 = time.process_time()
                    data = downsample_mean(data, (2, 2, 2))
                    t1 = time.process_time()
                    t_reduce += t1 - t0
                    for bz in range(0, data.shape[0], 64):
                        for by in range(0, data.shape[1], 64):
                            for bx in range(0, data.shape[2], 64):
                                encode_block(specs[level], np.ascontiguousarray(data[bz:bz + 64, by:by + 64,
                                                                                     bx:bx + 64]), 0, 0, 0, "")
                    t_encode += time.process_time() - t1
    return {"read_decode_level0_s": t_read, "reduce_levels_1_2_s": t_reduce, "encode_levels_1_2_s": t_encode,
            "codec": src.spec.codec.to_dict() if hasattr(src.spec.codec, "to_dict") else str(src.spec.codec)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024], metavar=("Z", "Y", "X"))
    args = parser.parse_args()
    shape: tuple[int, int, int] = (args.shape[0], args.shape[1], args.shape[2])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder = tempfile.mkdtemp(prefix="bench-pyramid-")
    try:
        facts = machine_facts(folder, ["tinybrain", "numpy", "numcodecs", "luigi"])
        k = kernels()
        logger.info("kernels: %s", k)
        s = stages(folder, shape)
        logger.info("stages: %s", s)
        stack = os.path.join(folder, "stack")
        write_stack(stack, shape)
        out = os.path.join(folder, "blockfs")
        os.makedirs(out)
        ingest = measure("blockfs_ingest", stack, out, shape)
        down = measure("blockfs_downsample", stack, out, shape)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratio = down["wall_s"] / ingest["wall_s"]
    lines = [
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
        markdown_table(["read + decode level 0 (once)", "reduce levels 1-2", "encode levels 1-2"],
                       [[f"{s['read_decode_level0_s']:.2f}", f"{s['reduce_levels_1_2_s']:.2f}",
                         f"{s['encode_levels_1_2_s']:.2f}"]]),
        "",
        f"Codec: {s['codec']}.",
        "",
        "## Through Luigi (--workers 2, pipeline defaults), same stack",
        "",
        markdown_table(["stage", "wall s", "CPU s", "peak MiB largest process"], [
            ["BuildDirectory (TIFF planes -> level 0)", f"{ingest['wall_s']:.2f}", f"{ingest['cpu_s']:.2f}",
             f"{ingest['peak_process_mib']:.0f}"],
            ["Downsample --volume (levels 1..)", f"{down['wall_s']:.2f}", f"{down['cpu_s']:.2f}",
             f"{down['peak_process_mib']:.0f}"],
        ]),
        "",
        f"Downsample / ingest: wall {ratio:.2f} (target <= 0.25), CPU {down['cpu_s'] / ingest['cpu_s']:.2f}.",
        "",
        "Machine (shared with other engineers' test runs):",
        "",
        *[f"- {key}: {v}" for key, v in facts.items()],
        f"- load average after: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
    ]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "pyramid.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, "pyramid.json"), "w") as f:
        json.dump({"shape_zyx": list(shape), "kernels": k, "stages": s, "ingest": ingest, "downsample": down,
                   "machine": facts}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
