"""Scaling: the end-to-end pipeline (TIFF planes -> BuildDirectory + Downsample, luigi --workers 2) at growing sizes.

Bounded memory is a promise: a batch task holds at most ``[ingest]
memory_budget_mb`` of raw data, a pyramid task a region of ``Downsample
--region-mb`` MiB of its base level (and its reductions). This runs the same
pipeline as ``bench_end_to_end.py`` on stacks of 1024 x 1024 uint16 planes of
1, 4 and 16 GiB (``--gib``; the free disk is checked first: the stack plus
the volume need about 2x the size) and reports wall time per GiB and the peak
memory of the largest process (a Luigi worker or the scheduler) against those
budgets: both should stay flat as the volume grows.

Run::

    python benchmarks/bench_scaling.py --gib 1 4 16

Results: ``benchmarks/results/scaling.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from typing import Any

from bench_end_to_end import RESULTS, measure, write_stack
from common import machine_facts, markdown_table

logger = logging.getLogger("bench_scaling")

PLANE = (1024, 1024)  # y, x of every plane (2 MiB of uint16)


def budgets() -> dict[str, int]:
    """The configured memory bounds, MiB."""
    from blockfs_tasks.tasks.config import ingest
    from blockfs_tasks.tasks.pyramid import REGION_MB

    return {"ingest memory_budget_mb": int(ingest().memory_budget_mb), "Downsample region_mb": REGION_MB}


def run_size(folder: str, gib: float) -> dict[str, Any]:
    planes = int(round(gib * 2**30 / (PLANE[0] * PLANE[1] * 2)))
    shape = (planes, *PLANE)
    stack = os.path.join(folder, "stack")
    logger.info("%.0f GiB: writing %d planes", gib, planes)
    write_stack(stack, shape)
    results = {}
    try:
        for stage in ("blockfs_ingest", "blockfs_downsample"):
            out = os.path.join(folder, "blockfs")
            os.makedirs(out, exist_ok=True)
            logger.info("%.0f GiB: %s", gib, stage)
            results[stage] = measure(stage, stack, out, shape)  # the second stage adds the pyramid to the first's
            if "error" in results[stage]:
                raise SystemExit(f"{stage} at {gib} GiB failed: {results[stage]['error']}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ingest, down = results["blockfs_ingest"], results["blockfs_downsample"]
    return {
        "gib": gib, "shape_zyx": list(shape),
        "wall_s": ingest["wall_s"] + down["wall_s"], "cpu_s": ingest["cpu_s"] + down["cpu_s"],
        "ingest_wall_s": ingest["wall_s"], "downsample_wall_s": down["wall_s"],
        "ingest_cpu_s": ingest["cpu_s"], "downsample_cpu_s": down["cpu_s"],
        "peak_process_mib": max(ingest["peak_process_mib"], down["peak_process_mib"]),
        "ingest_peak_process_mib": ingest["peak_process_mib"], "downsample_peak_process_mib": down["peak_process_mib"],
        "peak_tree_mib": max(ingest["peak_tree_mib"], down["peak_tree_mib"]),
        "loadavg": [ingest["loadavg_before"], down["loadavg_after"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, nargs="+", default=[1, 4, 16])
    parser.add_argument("--folder", default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--name", default="scaling")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    root = args.folder or tempfile.mkdtemp(prefix="bench-scaling-")
    facts = machine_facts(root, ["luigi", "numcodecs", "tifffile"])
    rows, results, skipped = [], [], []
    try:
        for gib in args.gib:
            free = shutil.disk_usage(root).free / 2**30
            if free < 2.5 * gib + 5:
                skipped.append(f"{gib:g} GiB: skipped, {free:.0f} GiB free on the disk (needs ~{2.5 * gib + 5:.0f})")
                logger.warning(skipped[-1])
                continue
            r = run_size(os.path.join(root, f"{gib:g}gib"), gib)
            results.append(r)
            rows.append([f"{gib:g}", f"{r['wall_s']:.1f}", f"{r['wall_s'] / gib:.1f}", f"{r['cpu_s'] / gib:.1f}",
                         f"{r['ingest_wall_s'] / gib:.1f}", f"{r['downsample_wall_s'] / gib:.1f}",
                         f"{r['downsample_wall_s'] / r['ingest_wall_s']:.2f} / "
                         f"{r['downsample_cpu_s'] / r['ingest_cpu_s']:.2f}",
                         f"{r['ingest_peak_process_mib']:.0f} / {r['downsample_peak_process_mib']:.0f}",
                         f"{r['peak_tree_mib']:.0f}"])
    finally:
        if args.folder is None:
            shutil.rmtree(root, ignore_errors=True)
    lines = [
        "# Scaling: TIFF planes to a multiscale volume at growing sizes",
        "",
        "blockfs_tasks `BuildDirectory` then `Downsample --volume` through `luigi --workers 2` (pipeline "
        "defaults), on stacks of 1024 x 1024 uint16 TIFF planes (synthetic light-sheet, warm page cache), 2 cores. "
        "Peak MiB = USS of the largest single process (a Luigi worker or the scheduler process) during each "
        f"stage; configured bounds: {budgets()}.",
        "",
        markdown_table(["GiB", "wall s", "wall s / GiB", "CPU s / GiB", "ingest s / GiB", "downsample s / GiB",
                        "downsample / ingest (wall / CPU)", "peak MiB largest process (ingest / downsample)",
                        "peak MiB all processes"], rows),
        "",
        *skipped,
        "",
        "Machine (shared with other engineers' test runs; load averages in the JSON):",
        "",
        *[f"- {k}: {v}" for k, v in facts.items()],
    ]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{args.name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, f"{args.name}.json"), "w") as f:
        json.dump({"budgets_mib": budgets(), "machine": facts, "results": results, "skipped": skipped}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
