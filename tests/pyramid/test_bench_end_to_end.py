"""A tiny run of the end-to-end benchmark script: every tool's output is read back and checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_end_to_end_benchmark_smoke_run(tmp_path: Path) -> None:
    tools = ["blockfs", "blockfs_ingest", "blockfs_downsample", "tensorstore_zarr3", "dask_zarr"]
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_end_to_end.py"), "--shape", "64", "192", "128",
         "--tools", *tools, "--results", str(tmp_path), "--name", "smoke", "--folder", str(tmp_path / "work")],
        check=True, cwd=REPO / "benchmarks", timeout=600,
    )
    results = {r["tool"]: r for r in json.loads((tmp_path / "smoke.json").read_text())["results"]}
    assert sorted(results) == sorted(tools)
    for tool, r in results.items():
        assert "error" not in r, (tool, r)
        assert r["check"]["level0_equal"], tool
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["stored_bytes"] > 0
    assert results["blockfs"]["check"]["rounding"] == "half up"
    assert results["blockfs"]["check"]["levels"] == results["blockfs"]["check"]["levels_expected"] == 3
    assert results["tensorstore_zarr3"]["check"]["rounding"] == "half to even"
    report = (tmp_path / "smoke.md").read_text()
    assert "| blockfs_tasks" in report
    assert "Downsample alone / BuildDirectory alone" in report and "marginal cost inside the one-run" in report
