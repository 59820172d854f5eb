"""SIGKILL at every syscall of a small live-write session (issue 9 item 5; items 2, 3 and 12 stay kept).

A run writes 8 blocks of a tiny volume and closes it. strace kills it at the
Nth ``pwrite64``, ``write``, ``fsync``, ``rename``, ``link``, ``unlink`` or
``ftruncate`` (the signal lands as the call starts, so the call never
happens), for every N up to the end of the run, and for each syscall in turn:
every state the files pass through is a crash point. After each kill:

- ``Directory.open`` works (unless no volume existed yet and no block had
  been written), every block whose ``write_block`` had returned reads back
  exactly, and no block reads wrong;
- the next writing session takes the dead one over and closes normally (or
  reports the torn block with WriterDiedError, having committed the rest),
  and leaves no temporary, journal or session file behind.

To run each kill point in milliseconds, a "zygote" process imports numpy and
the package once and forks a child per kill point; the child waits on a pipe,
strace attaches to it (``-p``) with the injection, and it is let go.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory, WriterDiedError
from blockfs_tasks.core.atomic import TEMP_MARKER

from .faults import need_strace
from .helpers import SCRIPT_TIMEOUT, same

SYSCALLS = ("pwrite64", "write", "fsync", "rename", "link", "unlink", "ftruncate")

ZYGOTE = r"""
import json, os, signal, sys, traceback
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import numpy as np
from blockfs_tasks.core import Directory

KILLED_WORKER = 3


def block(i):
    return np.random.RandomState(i).randint(0, 65535, (16, 16, 16), np.uint16)

D = OUT = ORIGINS = None


def write(i):
    D.write_block(block(i), *ORIGINS[i])
    os.write(OUT, b"%d\n" % i)  # after write_block returned: committed


def run(job):
    global D, OUT, ORIGINS
    OUT = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if job["mode"] == "reopen":
        D = Directory.open(job["path"], "r+")
    else:
        D = Directory(32, 32, 32, np.uint16, job["path"], 16, 16, 16, compression="lz4", compression_level=1)
        D.create()
    ORIGINS = list(D.grid.origins())
    if job["mode"] == "pool":
        # a pool that notices a killed worker (multiprocessing.Pool would wait for it forever)
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                list(pool.map(write, range(8)))
            except BrokenProcessPool:
                os._exit(KILLED_WORKER)  # the user's script dies of it, without close()
    else:
        for i in range(8):
            write(i)
    D.close()
    os.write(OUT, b"closed\n")

for line in sys.stdin:
    job = json.loads(line)
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)  # the run and its pool workers: one process group
        os.close(go_w)
        os.read(go_r, 1)  # until strace is attached
        try:
            run(job)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(go_r)
    print(pid, flush=True)
    sys.stdin.readline()  # "go"
    os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    try:
        os.killpg(pid, signal.SIGKILL)  # pool workers that outlive a killed run die with it
    except ProcessLookupError:
        pass
    print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                      "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
"""


class Zygote:
    """A process with the package imported that forks one traced child per kill point."""

    def __init__(self, cwd: Path) -> None:
        self.strace = need_strace()
        self.proc = subprocess.Popen([sys.executable, "-B", "-c", ZYGOTE], cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, job: dict, inject: str) -> int:
        """Run ``job`` in a fresh child under ``strace -e inject=...``; return the signal that ended it (0: none)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        tracer = subprocess.Popen([self.strace, "-f", "-o", "/dev/null", "-p", str(pid), "-e", f"inject={inject}"],
                                  stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        attached = tracer.stderr.readline()
        assert "attached" in attached, attached
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        tracer.wait(timeout=SCRIPT_TIMEOUT)
        tracer.stderr.close()
        if result["exit"] == 3:  # a pool worker was the one killed
            return signal.SIGKILL
        assert result["signal"] or result["exit"] == 0, f"the run failed without being killed ({inject})"
        return int(result["signal"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=SCRIPT_TIMEOUT)


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    z = Zygote(tmp_path)
    try:
        yield z
    finally:
        z.close()


def block(i: int) -> np.ndarray:
    return np.random.RandomState(i).randint(0, 65535, (16, 16, 16), np.uint16)


BASE_BLOCKS = {0: 100, 3: 103, 5: 105}  # the "reopen" case's volume before the session: position -> seed


def make_base(path: Path) -> None:
    d = Directory(32, 32, 32, np.uint16, path, 16, 16, 16, compression="lz4", compression_level=1)
    d.create()
    origins = list(d.grid.origins())
    for i, seed in BASE_BLOCKS.items():
        d.write_block(block(seed), *origins[i])
    d.close()


def volume_leftovers(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if TEMP_MARKER in f or f.endswith((".journal", ".session")))


def check_after_kill(folder: Path, mode: str, reported: list[int]) -> None:
    path = folder / "v.blockfs"
    if not path.exists():
        assert mode != "reopen" and not reported, reported  # killed inside create(), before any block
    else:
        r = Directory.open(path)
        origins = list(r.grid.origins())
        present = set(r.block_origins())
        for i, o in enumerate(origins):
            if i in reported:
                assert o in present and same(r.read_block(*o), block(i)), f"committed block {i} lost or wrong"
            elif o in present:  # written but not yet reported, or from before the session: exact either way
                got = r.read_block(*o)
                assert same(got, block(i)) or (mode == "reopen" and same(got, block(BASE_BLOCKS.get(i, -1)))), i
            elif mode == "reopen":
                assert i not in BASE_BLOCKS, f"block {i} of the earlier session lost"
    # the next session takes over and cleans up
    if path.exists():
        w = Directory.open(path, "r+")
        try:
            w.close()
        except WriterDiedError:
            pass  # a block torn by the kill: reported, every committed block kept
    else:
        w = Directory(32, 32, 32, np.uint16, path, 16, 16, 16)
        w.create()
        w.close()
    assert volume_leftovers(folder) == []


def sweep(zygote: Zygote, tmp_path: Path, mode: str, syscalls: tuple[str, ...]) -> dict[str, int]:
    """Kill at every N of every syscall until a run completes; check each; return the kill points per syscall."""
    points: dict[str, int] = {}
    base = tmp_path / "base"
    if mode == "reopen":
        base.mkdir()
        make_base(base / "v.blockfs")
    for syscall in syscalls:
        n = 0
        while True:
            n += 1
            folder = tmp_path / f"{syscall}-{n}"
            if mode == "reopen":
                shutil.copytree(base, folder)
            else:
                folder.mkdir()
            out = folder / "reported.txt"
            job = {"path": str(folder / "v.blockfs"), "mode": mode, "out": str(out)}
            killed = zygote.run(job, f"{syscall}:signal=SIGKILL:when={n}")
            lines = out.read_text().split() if out.exists() else []
            if not killed:
                assert lines[-1] == "closed", lines
                assert volume_leftovers(folder) == []
                break
            assert killed == signal.SIGKILL
            try:
                check_after_kill(folder, mode, [int(s) for s in lines if s.isdigit()])
            except AssertionError as e:
                raise AssertionError(f"killed at {syscall} #{n} ({mode}): {e}") from e
            shutil.rmtree(folder)
            assert n < 200, f"{syscall}: the run never completes"
        points[syscall] = n - 1
    return points


@pytest.mark.parametrize("mode", ["create", "reopen"])
def test_kill_at_every_syscall_of_a_small_session(zygote: Zygote, tmp_path: Path, mode: str) -> None:
    points = sweep(zygote, tmp_path, mode, SYSCALLS)
    assert points["pwrite64"] >= 16 and points["fsync"] >= 3 and points["rename"] >= 1 and points["link"] >= 2
    assert sum(points.values()) >= 40, points


@pytest.mark.slow
def test_kill_at_every_syscall_of_a_pool_session(zygote: Zygote, tmp_path: Path) -> None:
    """The creator and two forked writers.

    strace counts each process's calls: a kill lands in whichever first makes its Nth.
    """
    points = sweep(zygote, tmp_path, "pool", SYSCALLS)
    assert sum(points.values()) >= 60, points
