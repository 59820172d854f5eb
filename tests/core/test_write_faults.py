"""A failed write or fsync never corrupts what comes after it (issue 9 items 3 and 10).

- After ENOSPC/EIO on a block or on its journal entry, the call raises an
  error naming the file, the block is not committed, and every later block of
  the same process reads back exactly (it used to be written at a stale
  offset: every later block was a checksum error).
- A failed fsync of a block file makes ``close()`` fail, leaves the directory
  file as it was last published, and every later ``close()`` fails again
  (a retried close used to return normally: PostgreSQL's "fsyncgate").

Faults are real: strace injects them into a child process's syscalls on one
file, or a 2 MiB tmpfs fills up.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.blockfile import block_file_name, journal_name

from .faults import json_lines, run_traced
from .helpers import same

# Writes blocks 0..n-1 of a fresh volume in order, one JSON line per block, going on after errors.
WRITER = r"""
import json, sys
import numpy as np
from blockfs_tasks.core import Directory

path, size, block, in_child = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "child"
d = Directory(size, size, size, np.uint16, path, block, block, block, compression="zstd", compression_level=1)
d.create()

def data(i):
    return np.random.RandomState(i).randint(0, 65535, (block,) * 3, np.uint16)

def write_all():
    for i, (x, y, z) in enumerate(d.grid.origins()):
        try:
            d.write_block(data(i), x, y, z)
        except Exception as e:
            failure = {"type": type(e).__name__, "error": str(e), "errno": getattr(e, "errno", None)}
            print(json.dumps({"i": i, **failure}), flush=True)
        else:
            print(json.dumps({"i": i, "ok": True}), flush=True)

if in_child:
    import multiprocessing
    p = multiprocessing.get_context("fork").Process(target=write_all)
    p.start(); p.join()
else:
    write_all()
for attempt in ("close", "close again"):
    try:
        d.close()
    except Exception as e:
        failure = {"type": type(e).__name__, "error": str(e), "errno": getattr(e, "errno", None)}
        print(json.dumps({"close": attempt, **failure}), flush=True)
    else:
        print(json.dumps({"close": attempt, "ok": True}), flush=True)
"""


def seeded(i: int, block: int) -> np.ndarray:
    return np.random.RandomState(i).randint(0, 65535, (block,) * 3, np.uint16)


def check_volume(path: Path, lines: list[dict], block: int) -> tuple[list[int], list[dict]]:
    """Every block whose write returned reads back exactly; every failed one is absent. Returns (ok, failed)."""
    d = Directory.open(path)  # replays the journals if close() did not publish
    origins = list(d.grid.origins())
    ok = [line["i"] for line in lines if "i" in line and line.get("ok")]
    failed = [line for line in lines if "i" in line and not line.get("ok")]
    for i in ok:
        assert same(d.read_block(*origins[i]), seeded(i, block)), f"block {i}, written after a failed one, is corrupt"
    for line in failed:
        assert not d.has_block(*origins[line["i"]]), line
    return ok, failed


@pytest.mark.parametrize("target", ["journal", "block file"])
@pytest.mark.parametrize("errno_name", ["ENOSPC", "EIO"])
def test_a_failed_append_does_not_shift_the_blocks_after_it(tmp_path: Path, target: str, errno_name: str) -> None:
    """The third write to the journal (or block file) fails; blocks 4.. of the same process must still be exact."""
    path = tmp_path / "v.blockfs"
    victim = journal_name(str(path), 0) if target == "journal" else block_file_name(str(path), 0)
    result = run_traced(WRITER, str(path), "64", "32", "self", cwd=tmp_path,
                        inject=[f"pwrite64,write:error={errno_name}:when=3"], paths=[victim])
    lines = json_lines(result.stdout)
    ok, failed = check_volume(path, lines, 32)
    assert [line["i"] for line in failed] == [2], (lines, result.stderr)
    assert ok == [0, 1, 3, 4, 5, 6, 7]
    error = failed[0]
    assert error["type"] == "WriteFailedError" and victim in error["error"] and "not committed" in error["error"]
    assert error["errno"] == (28 if errno_name == "ENOSPC" else 5)
    assert lines[-2:] == [{"close": "close", "ok": True}, {"close": "close again", "ok": True}]
    assert os.path.getsize(block_file_name(str(path), 0)) == sum(
        int(e["size"]) for e in fmt.read_directory(str(path)).index if e["file"]
    )  # no stray bytes of the failed block


def test_an_appender_that_cannot_undo_a_failed_write_refuses_later_blocks(tmp_path: Path) -> None:
    """EIO on the journal and on truncating it back: the process must not write at a wrong offset again."""
    path = tmp_path / "v.blockfs"
    victim = journal_name(str(path), 0)
    result = run_traced(WRITER, str(path), "64", "32", "self", cwd=tmp_path,
                        inject=["pwrite64:error=EIO:when=3", "ftruncate:error=EIO"], paths=[victim])
    lines = json_lines(result.stdout)
    ok, failed = check_volume(path, lines, 32)
    assert ok == [0, 1] and [line["i"] for line in failed] == list(range(2, 8)), (lines, result.stderr)
    assert all(line["type"] == "WriteFailedError" and victim.rsplit(".", 2)[0] in line["error"] for line in failed)
    assert "writes no more blocks" in failed[0]["error"] and "writes no more blocks" in failed[-1]["error"]


@pytest.mark.parametrize("writer", ["self", "child"])
def test_a_failed_fsync_is_never_retried_into_success(tmp_path: Path, writer: str) -> None:
    """fsync of the block file fails (EIO): close() fails, again on retry, and the directory is not published."""
    path = tmp_path / "v.blockfs"
    victim = block_file_name(str(path), 0)
    result = run_traced(WRITER, str(path), "64", "32", writer, cwd=tmp_path,
                        inject=["fsync:error=EIO:when=1"], paths=[victim])  # reported once, as the kernel does
    lines = json_lines(result.stdout)
    closes = [line for line in lines if "close" in line]
    assert [c.get("type") for c in closes] == ["WriteFailedError", "WriteFailedError"], (lines, result.stderr)
    assert all(victim in c["error"] and c["errno"] == 5 for c in closes)
    assert "earlier close() failed" in closes[1]["error"]
    published = fmt.read_directory(str(path))
    assert not published.index["file"].any()  # the volume stays as last published (empty)
    check_volume(path, lines, 32)  # the blocks are still in their journals: nothing is lost either


# ------------------------------------------------------------ a real full disk
@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk_mid_block(tiny_tmpfs: Path) -> None:
    """64 incompressible blocks of 64 KiB into 2 MiB: the disk fills in the middle of a block."""
    path = tiny_tmpfs / "v.blockfs"
    from .helpers import run_python

    result = run_python(WRITER, str(path), "128", "32", "self", cwd=tiny_tmpfs.parent, check=False)
    lines = json_lines(result.stdout)
    failed = [line for line in lines if "i" in line and not line.get("ok")]
    assert failed, "the disk never filled: make the volume bigger"
    assert all(line["errno"] == 28 and str(path) in line["error"] for line in failed), failed[:3]
    ok, failed = check_volume(path, lines, 32)
    assert len(ok) >= 10 and len(ok) + len(failed) == 64
