"""Ctrl-C during a real `luigi` run: one 'rerun to resume' line, no tracebacks, and the rerun finishes."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
from pathlib import Path

import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.atomic import TEMP_MARKER
from blockfs_tasks.tasks.interrupt import MESSAGE

from .conftest import luigi_command, luigi_env, write_config

SOURCE = "synthetic:256x384x384"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal (a background job ignores SIGINT)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_prints_one_line_and_the_rerun_resumes(tmp_path: Path, workers: int) -> None:
    dest = tmp_path / "v.blockfs"
    cfg = write_config(tmp_path / "test.cfg", {"blockfs": {"block_size": 32}, "ingest": {"target_tasks": 8}})
    argv = luigi_command("BuildDirectory", "--source", SOURCE, "--dest", str(dest),
                         "--local-scheduler", "--workers", str(workers))
    proc = subprocess.Popen(argv, env=luigi_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # Ctrl-C on progress: once the first batch is done
        seen.append(line)
        if " done " in line and "WriteBlockBatch" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    output = "".join(seen) + proc.stdout.read()
    proc.wait(timeout=120)

    assert proc.returncode == -signal.SIGINT, output[-2000:]
    assert output.count(MESSAGE) == 1, output[-2000:]
    assert "Traceback" not in output, output[-4000:]
    assert not dest.exists()

    rerun = subprocess.run(argv, env=luigi_env(cfg), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert Directory.open(dest).shape == (256, 384, 384)
    assert not [f for f in glob.glob(f"{tmp_path}/*") if TEMP_MARKER in f or "-luigi-tmp-" in f]
