"""Crash safety with real ``kill -9``: killed writers, a killed creator, a crash around close().

The rule under test: a block is safe once its journal entry is committed
(``write_block`` has returned); whatever dies when, ``Directory.open`` works and
every committed block reads back exactly as written.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory, WriterDiedError
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.atomic import TEMP_MARKER
from blockfs_tasks.core.blockfile import journal_name

from .helpers import SCRIPT_TIMEOUT, same


def seeded_block(x: int, y: int, z: int, shape: tuple[int, int, int]) -> np.ndarray:
    return np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 65535, shape, np.uint16)


# A writer process: unpickles the volume, writes blocks in the given order and
# reports each one after write_block returned (i.e. once it is committed).
WRITER = r"""
import pickle, sys
import numpy as np
from blockfs_tasks.core.parallel import bounded_map

d = pickle.loads(open(sys.argv[1], "rb").read())
n_threads = int(sys.argv[2])
order = [tuple(map(int, s.split(","))) for s in open(sys.argv[3]).read().split()]

def write(o):
    x, y, z = o
    shape = d.get_block_size(x, y, z)
    d.write_block(np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 65535, shape, np.uint16), x, y, z)
    return o

print("ready", flush=True)
for x, y, z in bounded_map(write, order, n_threads):
    print(f"{x},{y},{z}", flush=True)
print("done", flush=True)
sys.stdin.read()  # wait to be killed
"""


def start_writer(
    d: Directory, tmp_path: Path, order: list[tuple[int, int, int]], n_threads: int = 1
) -> subprocess.Popen[str]:
    (tmp_path / "dir.pickle").write_bytes(pickle.dumps(d))
    (tmp_path / "order.txt").write_text(" ".join(f"{x},{y},{z}" for x, y, z in order))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "dir.pickle"), str(n_threads), str(tmp_path / "order.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill(proc: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the process; return the lines it had printed."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=SCRIPT_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout is not None
    return proc.stdout.read().split()


def parse(lines: list[str]) -> list[tuple[int, int, int]]:
    return [tuple(map(int, s.split(","))) for s in lines if s[0].isdigit()]  # type: ignore[misc]  # each line holds x,y,z


def committed_end(d: Directory, block_file: str) -> int:
    """Where the last committed block of ``block_file`` ends, from the index."""
    i = [os.path.basename(f) for f in d.block_filenames].index(os.path.basename(block_file))
    mine = d.index[d.index["file"] == i + 1]
    return int((mine["offset"] + mine["size"]).max()) if len(mine) else 0


def check_blocks(d: Directory, origins: object) -> None:
    for x, y, z in origins:  # type: ignore[attr-defined]  # any iterable of (x, y, z)
        assert same(d.read_block(x, y, z), seeded_block(x, y, z, d.get_block_size(x, y, z))), (x, y, z)


# ------------------------------------------------ (a) a writer killed at random
@pytest.mark.parametrize("seed", range(6))
def test_writer_killed_at_a_random_moment(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "volume.blockfs"
    d = Directory(512, 512, 256, np.uint16, path, 64, 64, 64, compression="zstd", compression_level=1)
    d.create()
    mine = [(0, 0, 0), (64, 0, 0)]  # the creating process writes too
    for o in mine:
        d.write_block(seeded_block(*o, (64, 64, 64)), *o)
    order = [tuple(int(v) for v in o) for o in rng.permutation(list(d.grid.origins())[2:])]
    n_threads = 1 + seed % 2
    proc = start_writer(d, tmp_path, order, n_threads)  # type: ignore[arg-type]  # order holds 3-tuples
    # Kill on progress, never on a timer: after the writer has reported k committed blocks.
    k = int(rng.integers(1, len(order) // 2))
    assert proc.stdout is not None
    early = [proc.stdout.readline().strip() for _ in range(k)]
    reported = parse(early + kill(proc))
    assert len(reported) >= k

    t0 = time.monotonic()
    try:
        d.close()
        torn = None
    except WriterDiedError as e:
        torn = str(e)
    assert time.monotonic() - t0 < 60  # close() never waits for the dead writer

    r = Directory.open(path)
    present = set(r)
    assert set(mine) | set(reported) <= present  # everything committed is there
    assert present <= set(mine) | set(order)
    if n_threads == 1:  # blocks are committed in order: the volume holds a prefix of the order
        written = present - set(mine)
        assert written == set(order[: len(written)]) and len(written) - len(reported) in (0, 1)
    check_blocks(r, present)
    # WriterDiedError exactly when the killed writer's block file holds uncommitted bytes
    writer_files = [f for f in r.block_filenames if os.path.basename(f) != "volume.blockfs.0"]
    tails = {f: os.path.getsize(f) - committed_end(r, f) for f in writer_files}
    leftover = sorted(set(os.listdir(tmp_path)) - {"dir.pickle", "order.txt", "volume.blockfs"})
    assert not any(f.endswith((".journal", ".fragment")) or TEMP_MARKER in f for f in leftover)
    unlisted = [str(tmp_path / f) for f in leftover if str(tmp_path / f) not in r.block_filenames]
    for f in unlisted:  # a file claimed by the writer before its first block was committed
        tails[f] = os.path.getsize(f)
    if torn is None:
        assert all(t == 0 for t in tails.values()), tails
    else:
        assert any(t > 0 for t in tails.values()), (torn, tails)
        assert any(os.path.basename(f) in torn for f, t in tails.items() if t > 0)


def test_torn_block_raises_writer_died_after_committing_the_rest(tmp_path: Path) -> None:
    """A writer killed in the middle of a block: close() commits every intact block, then raises."""
    path = tmp_path / "volume.blockfs"
    d = Directory(256, 256, 64, np.uint16, path, 64, 64, 64)
    d.create()
    order = list(d.grid.origins())[:10]
    proc = start_writer(d, tmp_path, order)
    lines = []
    assert proc.stdout is not None
    while "done" not in lines:
        lines.append(proc.stdout.readline().strip())
    kill(proc)
    block_file = tmp_path / "volume.blockfs.0"
    size = block_file.stat().st_size
    with open(block_file, "ab") as f:  # what a kill in the middle of write_all leaves behind
        f.write(os.urandom(1000))
    with pytest.raises(WriterDiedError) as e:
        d.close()
    assert str(block_file) in str(e.value) and "1000 uncommitted bytes" in str(e.value)
    r = Directory.open(path)
    assert set(r) == set(order)
    check_blocks(r, order)
    assert committed_end(r, str(block_file)) == size
    assert not os.path.exists(journal_name(str(path)))


def test_torn_block_is_reported_even_after_reading_during_the_session(tmp_path: Path) -> None:
    """Reading in the creating process (which replays the journal) must not hide a torn block at close()."""
    path = tmp_path / "volume.blockfs"
    d = Directory(256, 64, 64, np.uint16, path, 64, 64, 64)
    d.create()
    order = list(d.grid.origins())[:3]
    proc = start_writer(d, tmp_path, order)
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "done":
        pass
    kill(proc)
    with open(tmp_path / "volume.blockfs.0", "ab") as f:
        f.write(b"\x02\x01" * 300)
    assert d.has_block(*order[0]) and len(d) == 3  # the session sees the writer's blocks
    with pytest.raises(WriterDiedError, match="volume.blockfs.0"):
        d.close()
    check_blocks(Directory.open(path), order)


def test_torn_journal_entry_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "volume.blockfs"
    d = Directory(128, 128, 64, np.uint16, path, 64, 64, 64)
    d.create()
    origins = list(d.grid.origins())
    for o in origins[:3]:
        d.write_block(seeded_block(*o, (64, 64, 64)), *o)
    with open(journal_name(str(path)), "ab") as f:
        f.write(b"\x05" * 13)  # a writer killed in the middle of appending its entry
    r = Directory.open(path)
    assert set(r) == set(origins[:3])
    check_blocks(r, origins[:3])
    d.close()
    check_blocks(Directory.open(path), origins[:3])


# ------------------------------------------- (b) the creating process killed
CREATOR = r"""
import multiprocessing, sys
import numpy as np
from blockfs_tasks.core import Directory

d = Directory(256, 256, 192, np.uint16, "volume.blockfs", 64, 64, 64)
d.create()

def block(x, y, z):
    return np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 65535, (64, 64, 64), np.uint16)

def write(x, y, z):
    d.write_block(block(x, y, z), x, y, z)

if __name__ == "__main__":
    origins = list(d.grid.origins())
    n = int(sys.argv[1])
    for o in origins[:8]:
        write(*o)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.starmap(write, origins[8:n])
    print("written", flush=True)
    sys.stdin.read()  # killed here, before close()
"""


@pytest.mark.parametrize("n", [8, 40])
def test_creator_killed_before_close(tmp_path: Path, n: int) -> None:
    (tmp_path / "creator.py").write_text(CREATOR)
    proc = subprocess.Popen(
        [sys.executable, "creator.py", str(n)], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        kill(proc)
    path = tmp_path / "volume.blockfs"
    assert int((fmt.read_directory(str(path)).index["file"] != 0).sum()) == 0  # the directory file alone is empty
    origins = list(Directory.open(path).grid.origins())[:n]

    r = Directory.open(path)  # replays the journal
    assert set(r) == set(origins) and len(r) == n
    check_blocks(r, origins)
    assert same(
        r[0:64, 0:64, 0:128], np.concatenate([seeded_block(0, 0, 0, (64,) * 3), seeded_block(64, 0, 0, (64,) * 3)], 2)
    )

    w = Directory.open(path, "r+")  # a later session finishes the job: the journal is merged and removed
    w.write_block(seeded_block(192, 192, 128, (64, 64, 64)), 192, 192, 128)
    w.close()
    assert not os.path.exists(journal_name(str(path)))
    assert int((fmt.read_directory(str(path)).index["file"] != 0).sum()) == n + 1
    check_blocks(Directory.open(path), [*origins, (192, 192, 128)])


# ----------------------------------------------------- (c) killed during close
def _volume_with_journal(tmp_path: Path, n: int = 6) -> tuple[Path, Directory, list[tuple[int, int, int]]]:
    path = tmp_path / "volume.blockfs"
    d = Directory(128, 128, 128, np.uint16, path, 64, 64, 64)
    d.create()
    origins = list(d.grid.origins())[:n]
    for o in origins:
        d.write_block(seeded_block(*o, (64, 64, 64)), *o)
    return path, d, origins


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_directory_and_journal(tmp_path: Path) -> None:
    """Killed while writing the new directory file: a half-written temporary beside the old directory + journal."""
    path, d, origins = _volume_with_journal(tmp_path)
    stale = Path(f"{path}{TEMP_MARKER}{socket.gethostname()}-{_dead_pid()}")
    stale.write_bytes(path.read_bytes()[:30])
    del d  # the process "died"
    r = Directory.open(path)
    assert set(r) == set(origins)
    check_blocks(r, origins)
    w = Directory.open(path, "r+")
    w.close()
    check_blocks(Directory.open(path), origins)
    assert not os.path.exists(journal_name(str(path)))


def test_killed_after_the_rename_before_removing_the_journal(tmp_path: Path) -> None:
    """The new directory is in place but the journal is still there: replaying it again changes nothing."""
    path, d, origins = _volume_with_journal(tmp_path)
    journal = Path(journal_name(str(path)))
    saved = journal.read_bytes()
    d.close()
    journal.write_bytes(saved)
    r = Directory.open(path)
    assert set(r) == set(origins)
    check_blocks(r, origins)
    w = Directory.open(path, "r+")
    w.write_block(seeded_block(64, 64, 64, (64, 64, 64)), 64, 64, 64)
    w.close()
    check_blocks(Directory.open(path), [*origins, (64, 64, 64)])


def test_create_after_a_crash_starts_clean(tmp_path: Path) -> None:
    path, d, _ = _volume_with_journal(tmp_path)
    Path(f"{journal_name(str(path))}.new").write_bytes(b"half")  # killed inside _start_journal
    fresh = Directory(128, 128, 128, np.uint16, path, 64, 64, 64)
    fresh.create()
    fresh.write_block(seeded_block(0, 64, 0, (64, 64, 64)), 0, 64, 0)
    fresh.close()
    r = Directory.open(path)
    assert list(r) == [(0, 64, 0)]
    check_blocks(r, [(0, 64, 0)])


CLOSER = r"""
import os, signal, sys
import numpy as np
from blockfs_tasks.core import Directory

d = Directory(1024, 1024, 512, np.uint16, "volume.blockfs", 32, 32, 64)
d.create()
for i in range(20):
    x, y = 32 * i, 32 * (i % 3)
    d.write_block(np.random.RandomState(i).randint(0, 65535, (64, 32, 32), np.uint16), x, y, 0)

# Die with SIGKILL at the k-th file-system call that close() makes (a deterministic crash point).
kill_at, calls = int(sys.argv[1]), [0]
def dying(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in ("write", "fsync", "replace", "rename", "link", "unlink", "ftruncate"):
    setattr(os, name, dying(getattr(os, name)))
d.close()
print("closed", calls[0], flush=True)
"""


def test_creator_killed_at_every_step_of_close(tmp_path: Path) -> None:
    """SIGKILL at each write/fsync/rename/link/unlink/ftruncate of close(), in turn, until close() completes.

    After every kill point ``Directory.open`` sees every committed block, exactly.
    """
    (tmp_path / "closer.py").write_text(CLOSER)
    want = {(32 * i, 32 * (i % 3), 0) for i in range(20)}
    for kill_at in itertools.count(1):
        run = tmp_path / f"kill-{kill_at}"
        run.mkdir()
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "closer.py"), str(kill_at)],
            cwd=run, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
        )
        r = Directory.open(run / "volume.blockfs")
        assert set(r) == want, kill_at
        for i in range(20):
            block = np.random.RandomState(i).randint(0, 65535, (64, 32, 32), np.uint16)
            assert same(r.read_block(32 * i, 32 * (i % 3), 0), block), (kill_at, i)
        if proc.returncode == 0:
            assert kill_at > 3, "close() made too few file-system calls for this test to mean anything"
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
