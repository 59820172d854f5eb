"""Progress in luigid's UI while batch and export-slab tasks run, and reset when a task reruns.

The tasks are held mid-work on a FIFO (a subclass in a module written for the
test), never by timing: the test reads luigid's ``/api/task_list`` while the
task waits, then opens the FIFO to let it finish.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .conftest import executable, luigi_env, write_config

GATED = '''
"""Test-only tasks that wait on a FIFO in the middle of their work."""
import luigi

from blockfs_tasks.tasks import BuildDirectory, ExportTiffSlab, WriteBlockBatch


def wait_for(gate):
    with open(gate, "rb") as f:  # blocks until the test opens the FIFO for writing
        f.read()


class GatedBatch(WriteBlockBatch):
    gate = luigi.Parameter(significant=False)
    gate_at = luigi.IntParameter(significant=False)

    def blocks(self):
        for i, block in enumerate(super().blocks()):
            if i == self.gate_at:  # the writer has taken gate_at blocks
                wait_for(self.gate)
            yield block


class GatedBuild(BuildDirectory):
    gate = luigi.Parameter(significant=False)
    gate_at = luigi.IntParameter(significant=False)

    def requires(self):
        return [GatedBatch(gate=self.gate, gate_at=self.gate_at, **b.param_kwargs) for b in super().requires()]


class GatedTiffSlab(ExportTiffSlab):
    gate = luigi.Parameter(significant=False)

    def progress(self):
        report, waited = super().progress(), []

        def gated(done, total):
            report(done, total)
            if 0 < 100 * done // total < 100 and not waited:
                waited.append(True)
                wait_for(self.gate)

        gated.finish = report.finish
        return gated
'''


def task_list(port: int, status: str) -> dict:
    query = urllib.parse.quote(json.dumps({"status": status}))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data={query}", timeout=5) as r:
        return json.load(r)["response"]


def running(port: int, name: str, proc: subprocess.Popen, ready) -> dict:
    """The RUNNING task ``name`` once ``ready(task)`` holds (it waits on the FIFO meanwhile)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for task in task_list(port, "RUNNING").values():
            if task["name"] == name and ready(task):
                return task
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate(timeout=10)[0]
    pytest.fail(f"no running {name} reached the expected state; run output:\n{out}")


def release(gate: Path, proc: subprocess.Popen) -> str:
    with open(gate, "wb"):
        pass
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    return out


def test_progress_during_work_and_reset_on_rerun(tmp_path: Path, luigid):
    port, _ = luigid
    (tmp_path / "gated_tasks.py").write_text(textwrap.dedent(GATED))
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    cfg = write_config(
        tmp_path / "client.cfg",
        {
            "core": {"scheduler_host": "127.0.0.1", "scheduler_port": port},
            "blockfs": {"block_size": 32},
            "ingest": {"target_tasks": 1, "min_tasks": 1},  # one batch, one unit of 8 block rows of 8 blocks
            "export": {"memory_budget_mb": 1},  # bands of block rows: several reports per slab
        },
    )
    env = dict(luigi_env(cfg), PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    dest = tmp_path / "v.blockfs"

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([executable("luigi"), "--module", "gated_tasks", *args, "--workers", "1"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    build = ("GatedBuild", "--source", "synthetic:32x256x256", "--dest", str(dest), "--gate", str(gate))
    unit = "planes 0-32, rows 0-128"  # the half unit (2 of 4 block rows) being read when the gate shuts

    # 1. The batch waits after its first block row: its progress is strictly between 0 and 100.
    proc = start(*build, "--gate-at", "9")
    task = running(port, "GatedBatch", proc, lambda t: t["progress_percentage"])
    assert task["progress_percentage"] == 100 * 1 // 8
    assert task["status_message"] == unit
    release(gate, proc)
    [done] = [t for t in task_list(port, "DONE").values() if t["name"] == "GatedBatch"]
    assert done["progress_percentage"] == 100
    assert done["status_message"] == "64 blocks written"

    # 2. The same batch again (its outputs removed) shows 0 %, not the last run's 100 %.
    for path in tmp_path.glob("v.blockfs*"):
        path.unlink()
    proc = start(*build, "--gate-at", "0")
    task = running(port, "GatedBatch", proc, lambda t: t["status_message"] == unit)
    assert task["progress_percentage"] == 0
    release(gate, proc)

    # 3. An export slab reports while it writes its planes.
    pattern = str(tmp_path / "tiff" / "img_%03d.tiff")
    proc = start("GatedTiffSlab", "--volume", str(dest), "--output-pattern", pattern, "--z0", "0", "--z1", "32",
                 "--gate", str(gate))
    task = running(port, "GatedTiffSlab", proc, lambda t: t["progress_percentage"])
    assert 0 < task["progress_percentage"] < 100
    assert task["status_message"] == "planes 0-32"
    release(gate, proc)
    assert len(list((tmp_path / "tiff").iterdir())) == 32
