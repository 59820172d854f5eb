"""SIGKILL at every write, fsync, rename, link, unlink and fallocate of a commit and of a compaction.

strace (``-f -e inject=<syscall>:signal=SIGKILL:when=N``) kills the run as
its Nth such call starts, for every N until a run completes. After each kill:
every branch and tag points at a complete commit whose every block verifies
(CRC-32C) and reads as it should, the working volume reads as before; then
the same operation run again finishes the job: the commit exists exactly
once (a commit redone after a crash gets the same id), the compaction
leaves no dead byte it could punch, and no temporary or session file is
left behind. The default run covers the publishing steps (rename and
link of a commit; fallocate and unlink of a compaction); ``-m slow``
covers every syscall.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core import versions as V
from blockfs_tasks.core.atomic import TEMP_MARKER
from blockfs_tasks.core.naming import commit_file_name

from ..faults import run_traced
from .conftest import ORIGINS, B, N, values_of, write

COMMIT = """
import sys
from blockfs_tasks.core import Directory
print(Directory.open(sys.argv[1]).commit("second"), flush=True)
"""

COMPACT = """
import sys
from blockfs_tasks.core import versions
versions.compact(sys.argv[1], grace_seconds=0)
print("done", flush=True)
"""

FIRST = {ORIGINS[0]: 1, ORIGINS[1]: 2}
WORKING = {ORIGINS[0]: 3, ORIGINS[1]: 2, ORIGINS[2]: 4}
ALL = ("write", "fsync", "rename", "link", "unlink", "fallocate")
PUBLISHING = {False: ("rename", "link"), True: ("fallocate", "unlink")}  # commit, compaction


def make_base(folder: Path, for_compaction: bool) -> str:
    folder.mkdir()
    path = str(folder / "vol.blockfs")
    d = Directory(N * B, N * B, N * B, np.uint16, path, x_block_size=B, y_block_size=B, z_block_size=B)
    d.create()
    d.close()
    write(path, FIRST)
    Directory.open(path).commit("first")
    V.create_ref(path, V.TAGS, "v1")
    if for_compaction:
        V.create_ref(path, V.HEADS, "scratch")
        V.checkout(path, "scratch")
        write(path, {ORIGINS[5]: 5})
        Directory.open(path).commit("on scratch")  # then dropped: unreachable, compacted away
        V.checkout(path, "main")
        V.delete_ref(path, V.HEADS, "scratch")
    write(path, {ORIGINS[0]: 9, ORIGINS[3]: 8})  # soon dead: rewritten, deleted
    write(path, {ORIGINS[0]: 3, ORIGINS[2]: 4})
    Directory.open(path).delete(*_box(ORIGINS[3]))
    return path


def _box(origin: tuple[int, int, int]) -> tuple[int, ...]:
    x, y, z = origin
    return (x, x + B, y, y + B, z, z + B)


def check_consistent(path: str, expect: dict[str, dict]) -> None:
    """Every ref names a complete commit that verifies and reads as ``expect`` says; the working volume too."""
    for kind in (V.HEADS, V.TAGS):
        for name, cid in V.list_refs(path, kind).items():
            assert os.path.exists(commit_file_name(path, cid)), f"{kind}/{name} -> missing commit {cid}"
            info = V.read_commit(path, cid)
            if info.message in expect:
                assert values_of(f"{path}@{cid}") == expect[info.message], (name, info.message)
            else:
                values_of(f"{path}@{cid}")  # reads every block: CRC-32C and decode
    assert values_of(path) == WORKING


def leftovers(folder: Path) -> list[str]:
    out = []
    for _root, _, files in os.walk(folder):
        out += [f for f in files if TEMP_MARKER in f or f.endswith(".session")]
    return out


def kill_sweep(
    tmp_path: Path, base: Path, script: str, syscalls: tuple[str, ...],
    check: Callable[[str, bool, subprocess.CompletedProcess[str]], None],
) -> dict[str, int]:
    """Run ``script`` on a copy of ``base`` killed at the Nth ``syscall``, N = 1, 2... until a run completes.

    ``check(path, killed, run)`` judges each copy (and reruns what was killed).
    Returns, per syscall, how many kill points there were.
    """
    points = {}
    for syscall in syscalls:
        n = 0
        while True:
            n += 1
            folder = tmp_path / f"{syscall}-{n}"
            shutil.copytree(base, folder)
            path = str(folder / "vol.blockfs")
            run = run_traced(script, path, cwd=folder, inject=[f"{syscall}:signal=SIGKILL:when={n}"])
            killed = run.returncode == -signal.SIGKILL
            assert killed or run.returncode == 0, run.stderr
            try:
                check(path, killed, run)
                assert leftovers(folder) == []
            except AssertionError as e:
                raise AssertionError(f"killed at {syscall} #{n}: {e}") from e
            shutil.rmtree(folder)
            if not killed:
                break
            assert n < 100, f"{syscall}: the run never completes"
        points[syscall] = n - 1
    return points


def sweep(tmp_path: Path, syscalls: tuple[str, ...], compaction: bool) -> dict[str, int]:
    base = tmp_path / "base"
    make_base(base, compaction)
    expect = {"first": FIRST, "second": WORKING}

    def check(path: str, killed: bool, run: subprocess.CompletedProcess[str]) -> None:
        check_consistent(path, expect)
        if compaction:
            report = V.compact(path, grace_seconds=0)
            assert report.dead_bytes < 4096 * len(ORIGINS), report
            assert V.space_usage(path).dead_bytes == report.dead_bytes
        else:
            Directory.open(path).commit("second")
            head = V.read_ref(path, V.HEADS, "main").commit
            assert [c.message for c in V.history(path, head)] == ["second", "first"]  # exactly once
            if not killed:
                assert run.stdout.split()[-1] == head
        check_consistent(path, expect)

    return kill_sweep(tmp_path, base, COMPACT if compaction else COMMIT, syscalls, check)


@pytest.mark.parametrize("compaction", [False, True], ids=["commit", "compact"])
def test_kill_at_every_publishing_step(tmp_path: Path, compaction: bool) -> None:
    points = sweep(tmp_path, PUBLISHING[compaction], compaction)
    if compaction:
        assert points["fallocate"] >= 1 and points["unlink"] >= 2, points
    else:
        assert points["rename"] >= 2 and points["link"] >= 1, points


@pytest.mark.slow
@pytest.mark.parametrize("compaction", [False, True], ids=["commit", "compact"])
def test_kill_at_every_syscall(tmp_path: Path, compaction: bool) -> None:
    points = sweep(tmp_path, ALL, compaction)
    assert points["fsync"] >= 3 and points["write"] >= 3, points
    if compaction:
        assert points["fallocate"] >= 1 and points["unlink"] >= 1, points
