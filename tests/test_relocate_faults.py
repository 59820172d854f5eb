"""blockfs-mv, blockfs-cp and blockfs-rebase killed at every rename/link/unlink/fsync/write/mkdir/sendfile.

Each command runs under ``strace -f -e inject=SYSCALL:signal=SIGKILL:when=N``
for N = 1, 2, ... until it completes without being killed (a deterministic
crash point per syscall, no timing). After each kill:

- the source is never lost: the source or the destination is a complete
  volume that reads back exactly (for ``cp``, always the source);
- rerunning the same command completes, the destination reads back exactly,
  ``mv`` leaves no source file behind, and no temporary file is left anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from test_cli_core_tools import make_v1, make_v2, volume_files

from blockfs_tasks.cli import cp_main, mv_main, rebase_main
from blockfs_tasks.core import BlockfsError, Directory

STRACE = shutil.which("strace") or "/usr/bin/strace"
pytestmark = pytest.mark.skipif(
    not os.access(STRACE, os.X_OK), reason="strace is not installed (apt-get install strace)"
)

SYSCALLS = ("rename", "link", "unlink", "fsync", "write", "mkdir", "sendfile")
MAKERS: dict[str, Callable[[Path], tuple[Path, np.ndarray]]] = {"v2": make_v2, "v1": make_v1}
MAINS = {"mv": mv_main, "cp": cp_main, "rebase": rebase_main}


@dataclass
class Sweep:
    """Kill points tried and the failures seen, per syscall."""

    tried: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        failed = len({f.split(":")[0] for f in self.failures})
        return f"kill points {self.tried} (total {sum(self.tried.values())}), {failed} failed"


def run_killed(tool: str, args: list[str], syscall: str, n: int) -> int:
    """Run ``tool`` in a child killed at its ``n``-th ``syscall``; its return code (-9 when killed)."""
    code = f"import sys; from blockfs_tasks.cli import {tool}_main as m; sys.exit(m(sys.argv[1:]))"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={syscall}:signal=SIGKILL:when={n}",
           sys.executable, "-c", code, *args]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode


def reads_exactly(path: Path, data: np.ndarray) -> bool:
    try:
        d = Directory.open(path)
        return d.shape == data.shape and d[:].tobytes() == data.tobytes()
    except (BlockfsError, OSError):
        return False


def temporaries(*folders: Path) -> list[str]:
    return [f for folder in folders if folder.exists() for f in os.listdir(folder) if ".tmp-" in f]


def sweep_relocation(tmp_path: Path, tool: str, version: str) -> Sweep:
    """Kill ``tool`` at every crash point of a small case; check the promises after each."""
    made, data = MAKERS[version](tmp_path / "pristine")
    name = made.name
    sweep = Sweep()
    for syscall in SYSCALLS:
        n = 0
        while True:
            n += 1
            case = tmp_path / f"{syscall}-{n}"
            MAKERS[version](case / "a")  # made in place: format 1.0.0 names are absolute
            if tool == "rebase":
                shutil.move(case / "a", case / "b")  # moved by hand: rebase points it at the files beside it
                src, dest, args = case / "b" / name, case / "b" / name, [str(case / "b" / name), "--block-size", "97"]
            else:
                src, dest = case / "a" / name, case / "b" / name
                args = [str(src), str(case / "b")]
            code = run_killed(tool, args, syscall, n)
            what = f"{tool} {version} killed at {syscall} #{n}"
            if code == 0:
                break
            if code != -9:
                sweep.failures.append(f"{what}: exit {code} instead of being killed")
                break
            sweep.tried[syscall] = sweep.tried.get(syscall, 0) + 1
            if tool == "cp" and not reads_exactly(src, data):
                sweep.failures.append(f"{what}: the source no longer reads back")
            if not (reads_exactly(src, data) or reads_exactly(dest, data)):
                sweep.failures.append(f"{what}: neither source nor destination is a complete volume")
            try:
                rerun = MAINS[tool](args)
            except Exception as e:  # any error: count it, keep sweeping
                rerun = repr(e)
            if rerun != 0:
                sweep.failures.append(f"{what}: the rerun returned {rerun}")
            elif not reads_exactly(dest, data):
                sweep.failures.append(f"{what}: after the rerun the destination does not read back exactly")
            if tool == "mv" and volume_files(case / "a", name):
                sweep.failures.append(f"{what}: after the rerun source files remain: {volume_files(case / 'a', name)}")
            if tool == "cp" and not reads_exactly(src, data):
                sweep.failures.append(f"{what}: after the rerun the source no longer reads back")
            if temporaries(case / "a", case / "b"):
                left = temporaries(case / "a", case / "b")
                sweep.failures.append(f"{what}: temporaries left after the rerun: {left}")
            shutil.rmtree(case)
    return sweep


@pytest.mark.parametrize("tool", ["mv", "cp", "rebase"])
def test_killed_at_every_syscall_v2(tmp_path: Path, tool: str) -> None:
    sweep = sweep_relocation(tmp_path, tool, "v2")
    print(f"{tool} v2: {sweep.summary()}")
    assert sum(sweep.tried.values()) >= 4, sweep.summary()
    assert not sweep.failures, "\n".join([sweep.summary(), *sweep.failures])


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["mv", "cp", "rebase"])
def test_killed_at_every_syscall_v1(tmp_path: Path, tool: str) -> None:
    sweep = sweep_relocation(tmp_path, tool, "v1")
    print(f"{tool} v1: {sweep.summary()}")
    assert sum(sweep.tried.values()) >= 4, sweep.summary()
    assert not sweep.failures, "\n".join([sweep.summary(), *sweep.failures])


def test_cp_fsyncs_every_block_file_before_publishing(tmp_path: Path) -> None:
    """Issue 9 item 5: the copied block files are on disk before the directory that points at them is."""
    src, data = make_v2(tmp_path / "a")
    trace = tmp_path / "trace.txt"
    code = "import sys; from blockfs_tasks.cli import cp_main as m; sys.exit(m(sys.argv[1:]))"
    result = subprocess.run(
        [STRACE, "-f", "-qq", "-y", "-o", str(trace), "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         sys.executable, "-c", code, str(src), str(tmp_path / "b")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = trace.read_text().splitlines()
    dest = tmp_path / "b" / src.name
    published = [i for i, line in enumerate(lines) if "rename" in line and line.rstrip().endswith(f'"{dest}") = 0')]
    assert len(published) == 1, lines
    for block_file in (f"{dest}.0", f"{dest}.1"):
        synced = [i for i, line in enumerate(lines) if "fsync(" in line and f"<{block_file}>" in line]
        assert synced and synced[0] < published[0], (block_file, lines)
    folder_synced = [i for i, line in enumerate(lines) if "fsync(" in line and f"<{tmp_path / 'b'}>" in line]
    assert folder_synced and folder_synced[0] < published[0]
    assert reads_exactly(dest, data)


@pytest.mark.parametrize("tool, syscall", [("cp", "sendfile"), ("mv", "link")])
def test_ctrl_c_ends_in_one_line_and_the_rerun_resumes(tmp_path: Path, tool: str, syscall: str) -> None:
    """Issue 8 item 12: SIGINT in the middle of the work (at the 2nd copy/link, no timing involved)."""
    src, data = make_v2(tmp_path / "a")
    code = f"import sys; from blockfs_tasks.cli import {tool}_main as m; sys.exit(m(sys.argv[1:]))"
    result = subprocess.run(
        [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={syscall}:signal=SIGINT:when=2",
         sys.executable, "-c", code, str(src), str(tmp_path / "b")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"blockfs-{tool}: interrupted; rerun the same command to resume"]
    assert reads_exactly(src, data)
    assert MAINS[tool]([str(src), str(tmp_path / "b")]) == 0
    assert reads_exactly(tmp_path / "b" / src.name, data)
    assert temporaries(tmp_path / "a", tmp_path / "b") == []
