"""start_writer_processes(): one producer's write_block calls compressed by worker threads.

The promise under test: such a block is committed once flush() or close()
returns (kill -9 right after flush() loses nothing); bad blocks are refused in
the call; pool workers forked after start_writer_processes() still commit
each block before write_block returns; a block written twice keeps the later one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import BlockShapeError, WriteFailedError

from .helpers import SCRIPT_TIMEOUT, run_python, same


def block(x: int, y: int, z: int, shape: tuple[int, ...] = (16, 16, 16)) -> np.ndarray:
    return np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 4000, shape).astype(np.uint16)


def test_queued_blocks_are_committed_by_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    d = Directory(48, 40, 32, np.uint16, path, 16, 16, 16)
    d.create()
    d.start_writer_processes(queue_depth=2)
    buffer = np.empty((16, 16, 16), np.uint16)
    for x, y, z in d.grid.origins():
        shape = d.get_block_size(x, y, z)
        view = buffer[: shape[0], : shape[1], : shape[2]]
        view[...] = block(x, y, z, shape)
        d.write_block(view, x, y, z)  # the caller reuses its buffer at once: the queue holds a copy
    d.flush()
    assert set(Directory.open(path)) == set(d.grid.origins())  # committed (journals) before close
    with pytest.raises(BlockShapeError, match=r"\(x, y, z\) = \(0, 0, 0\)"):
        d.write_block(np.zeros((3, 3, 3), np.uint16), 0, 0, 0)  # refused in the call, not later
    d.write_block(np.full((16, 16, 16), 9, np.uint16), 0, 0, 0)  # again: the later block wins
    d.write_block(np.full((16, 16, 16), 7, np.uint16), 0, 0, 0)
    d.close()
    r = Directory.open(path)
    assert same(r.read_block(0, 0, 0), np.full((16, 16, 16), 7, np.uint16))
    for x, y, z in list(r.grid.origins())[1:]:
        assert same(r.read_block(x, y, z), block(x, y, z, r.get_block_size(x, y, z)))


def test_a_failed_worker_fails_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    d = Directory(32, 16, 16, np.uint16, path, 16, 16, 16)
    d.create()
    d.start_writer_processes()
    d.write_block(block(0, 0, 0), 0, 0, 0)
    d.flush()
    names = [n for n in os.listdir(tmp_path) if n.endswith(".journal")]
    assert len(names) == 1
    from blockfs_tasks.core.blockfile import process_appenders

    (appender,) = [a for a in process_appenders._appenders.values() if a.path.startswith(str(path))]
    read_only = os.open(os.devnull, os.O_RDONLY)
    os.dup2(read_only, appender._fd)  # fault injection: the block file's descriptor stops taking writes
    os.close(read_only)
    d.write_block(block(16, 0, 0), 16, 0, 0)
    with pytest.raises(WriteFailedError):
        d.flush()
    with pytest.raises(WriteFailedError):  # every later call says so too: never a silent gap
        d.write_block(block(16, 0, 0), 16, 0, 0)
    with pytest.raises(WriteFailedError):
        d.close()


KILLED_AFTER_FLUSH = r"""
import sys
import numpy as np
from blockfs_tasks.core import Directory

d = Directory(64, 64, 64, np.uint16, "v.blockfs", 16, 16, 16)
d.create()
d.start_writer_processes()
for x, y, z in d.grid.origins():
    d.write_block(np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 4000, (16, 16, 16)).astype(np.uint16),
                  x, y, z)
d.flush()
print("flushed", flush=True)
sys.stdin.read()  # killed here, before close()
"""


def test_blocks_survive_kill_9_after_flush(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(KILLED_AFTER_FLUSH)
    proc = subprocess.Popen([sys.executable, "w.py"], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=SCRIPT_TIMEOUT)
    w = Directory.open(tmp_path / "v.blockfs", "r+")  # takes over the dead session, replays its journal
    w.close()
    r = Directory.open(tmp_path / "v.blockfs")
    assert len(r) == 64
    for x, y, z in r.grid.origins():
        assert same(r.read_block(x, y, z), block(x, y, z))


def test_pool_forked_after_start_and_the_parent_writing_too(tmp_path: Path) -> None:
    result = run_python(r"""
        import multiprocessing, os
        import numpy as np
        from blockfs_tasks.core import Directory

        def block(x, y, z):
            return np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 4000, (16, 16, 16)).astype(np.uint16)

        d = Directory(64, 64, 64, np.uint16, "v.blockfs", 16, 16, 16)
        d.create()
        d.start_writer_processes()
        origins = list(d.grid.origins())

        def write(x, y, z):
            d.write_block(block(x, y, z), x, y, z)  # a forked worker: committed on return
            return os.getpid()

        for o in origins[:8]:
            write(*o)  # the parent queues its blocks (threads start here, before the fork)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pids = set(pool.starmap(write, origins[8:]))
        d.close()
        r = Directory.open("v.blockfs")
        print(len(r), bool(pids - {os.getpid()}), all((r.read_block(*o) == block(*o)).all() for o in origins))
    """, cwd=tmp_path)
    # forked workers wrote (how many of the 2 got a chunk depends on scheduling), and every block is there
    assert result.stdout.split() == ["64", "True", "True"]


def test_the_caller_compresses_when_every_worker_is_busy() -> None:
    """Caller runs: with the one worker busy and no room left, submit commits the block in the calling thread."""
    import threading

    from blockfs_tasks.core.async_writer import AsyncBlockWriter

    release = threading.Event()
    committed: list[tuple[int, int, int]] = []  # (position, first voxel, thread)

    def commit(position: int, array: np.ndarray, where: str) -> None:
        if position == 0:
            release.wait()  # the worker holds block 0 until the test lets it go
        committed.append((position, int(array.flat[0]), threading.get_ident()))

    writer = AsyncBlockWriter(commit, n_threads=1, max_in_flight=1)
    mine = np.full((4, 4, 4), 5, np.uint16)
    writer.submit(0, mine, "block 0", owned=False)  # queued: a copy, so the caller may reuse its array
    mine[...] = 6
    writer.submit(1, mine, "block 1", owned=False)  # no room: committed here, before submit returns
    assert committed == [(1, 6, threading.get_ident())]
    release.set()
    writer.close()
    assert committed[1][:2] == (0, 5) and committed[1][2] != threading.get_ident()


def test_write_blocks_from_a_generator_that_reuses_one_buffer(tmp_path: Path) -> None:
    """write_blocks queues copies (the caller compresses the rest itself): a reused buffer loses nothing."""
    path = tmp_path / "v.blockfs"
    d = Directory(64, 64, 48, np.uint16, path, 16, 16, 16)
    d.create()
    buffer = np.empty((16, 16, 16), np.uint16)

    def items():  # one array for every block, rewritten as soon as write_blocks asks for the next
        for x, y, z in d.grid.origins():
            buffer[...] = block(x, y, z)
            yield buffer, x, y, z

    assert d.write_blocks(items(), n_threads=3) == 48
    d.close()
    r = Directory.open(path)
    assert len(r) == 48
    for x, y, z in r.grid.origins():
        assert same(r.read_block(x, y, z), block(x, y, z))
