"""The original README example, run as a user's script: many processes call write_block, then close.

Each variant runs in a subprocess (with a timeout, so a deadlock fails) and the
test then checks every block against what was written: blocks are deterministic
per position (seeded by x, y, z).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory

from .helpers import random_block, run_python, same


def readme_block(x: int, y: int, z: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The README's ``np.random.randint(0, 65535, shape, np.uint16)``, seeded by the block's origin."""
    return np.random.RandomState((x << 20) + (y << 10) + z).randint(0, 65535, shape, np.uint16)


_HEAD = '''
import itertools, json, multiprocessing, os, sys
import numpy as np
from blockfs_tasks.core import Directory

SIZE, BLOCK, METHOD = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
MAXTASKS = int(sys.argv[4]) or None
SHAPE = (BLOCK, BLOCK, BLOCK)
'''

_TAIL = '''
def files_now():
    return [f for f in os.listdir(".") if f.startswith("volume.blockfs")]


def report(pool_size, results):
    close_and_check = Directory.open("volume.blockfs").read_block(128, 64, 0)
    print(json.dumps({
        "pool_size": pool_size,
        "writers": sorted({pid for pid, _ in results}),
        "max_files_while_writing": max(n for _, n in results),
        "block_128_64_0_ok": bool((close_and_check == readme_block(128, 64, 0, SHAPE)).all()),
    }))
'''

# The README, as users wrote it (fork: no __main__ guard needed); the volume lives at module top level.
README_FORK = _HEAD + "<<BLOCK_SOURCE>>" + '''
directory = Directory(SIZE, SIZE, SIZE, np.uint16, "volume.blockfs",
                      x_block_size=BLOCK, y_block_size=BLOCK, z_block_size=BLOCK)
directory.create()
directory.start_writer_processes()  # need this for multithreading setup


def do_something_awesome(x, y, z):
    block = readme_block(x, y, z, SHAPE)
    directory.write_block(block, x, y, z)
    return os.getpid(), len(files_now())

''' + _TAIL + '''
multiprocessing.set_start_method(METHOD)
with multiprocessing.Pool(maxtasksperchild=MAXTASKS) as pool:
    results = pool.starmap(do_something_awesome, itertools.product(range(0, SIZE, BLOCK),
                                                                   range(0, SIZE, BLOCK),
                                                                   range(0, SIZE, BLOCK)))
    pool_size = pool._processes
directory.close()
report(pool_size, results)
'''

# spawn / forkserver: the volume still at module top level, the pool under the __main__ guard.
# Each child re-runs the top level, including create(): it must join the volume, not wipe it.
README_SPAWN_TOP_LEVEL = _HEAD + "<<BLOCK_SOURCE>>" + '''
directory = Directory(SIZE, SIZE, SIZE, np.uint16, "volume.blockfs",
                      x_block_size=BLOCK, y_block_size=BLOCK, z_block_size=BLOCK)
directory.create()
directory.start_writer_processes()


def do_something_awesome(x, y, z):
    block = readme_block(x, y, z, SHAPE)
    directory.write_block(block, x, y, z)
    return os.getpid(), len(files_now())

''' + _TAIL + '''
if __name__ == "__main__":
    multiprocessing.set_start_method(METHOD)
    with multiprocessing.Pool(maxtasksperchild=MAXTASKS) as pool:
        results = pool.starmap(do_something_awesome, itertools.product(range(0, SIZE, BLOCK),
                                                                       range(0, SIZE, BLOCK),
                                                                       range(0, SIZE, BLOCK)))
        pool_size = pool._processes
    directory.close()
    report(pool_size, results)
'''

# The directory passed to the workers as an argument (pickled), everything under the guard.
README_ARGUMENT = _HEAD + "<<BLOCK_SOURCE>>" + '''

def do_something_awesome(directory, x, y, z):
    block = readme_block(x, y, z, SHAPE)
    directory.write_block(block, x, y, z)
    return os.getpid(), len(files_now())

''' + _TAIL + '''
if __name__ == "__main__":
    multiprocessing.set_start_method(METHOD)
    directory = Directory(SIZE, SIZE, SIZE, np.uint16, "volume.blockfs",
                          x_block_size=BLOCK, y_block_size=BLOCK, z_block_size=BLOCK)
    directory.create()
    with multiprocessing.Pool(maxtasksperchild=MAXTASKS) as pool:
        results = pool.starmap(do_something_awesome,
                               [(directory, x, y, z) for x, y, z in itertools.product(
                                   range(0, SIZE, BLOCK), range(0, SIZE, BLOCK), range(0, SIZE, BLOCK))])
        pool_size = pool._processes
    directory.close()
    report(pool_size, results)
'''

SCRIPTS = {"top-level": README_FORK, "spawn-top-level": README_SPAWN_TOP_LEVEL, "argument": README_ARGUMENT}


def run_readme(tmp_path: Path, variant: str, method: str, size: int = 256, block: int = 64,
               maxtasks: int = 0, timeout: float = 120) -> dict:
    source = SCRIPTS[variant].replace("<<BLOCK_SOURCE>>", inspect.getsource(readme_block))
    result = run_python(source, str(size), str(block), method, str(maxtasks), cwd=tmp_path, timeout=timeout)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_volume(tmp_path: Path, report: dict, size: int, block: int) -> None:
    """Every block present and equal to what was written; at most K + 1 files after close.

    While writing: the directory, the session file, and a block file and its journal per writer.
    """
    assert report["block_128_64_0_ok"]
    d = Directory.open(tmp_path / "volume.blockfs")
    n = (size // block) ** 3
    assert len(d) == n and d.shape == (size, size, size)
    for x, y, z in d.grid.origins():
        assert same(d.read_block(x, y, z), readme_block(x, y, z, (block,) * 3)), (x, y, z)
    k = len(report["writers"])
    files = sorted(f for f in os.listdir(tmp_path) if f.startswith("volume.blockfs"))
    block_files = [f for f in files if re.fullmatch(r"volume\.blockfs\.\d+", f)]
    assert files == ["volume.blockfs", *block_files], files  # no journal, fragment or temporary left
    assert len(block_files) <= k and len(files) <= k + 1
    assert report["max_files_while_writing"] <= 2 * k + 2
    assert len(d.block_filenames) == len(block_files)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_readme_volume_at_top_level(tmp_path: Path, method: str) -> None:
    variant = "top-level" if method == "fork" else "spawn-top-level"
    report = run_readme(tmp_path, variant, method)
    assert report["pool_size"] == (os.cpu_count() or 1)
    assert len(report["writers"]) <= report["pool_size"]
    check_volume(tmp_path, report, 256, 64)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_readme_directory_as_an_argument(tmp_path: Path, method: str) -> None:
    report = run_readme(tmp_path, "argument", method)
    check_volume(tmp_path, report, 256, 64)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_started_later_do_not_wipe_the_volume(tmp_path: Path, method: str) -> None:
    """Workers replaced during the run (maxtasksperchild) re-run the script's top level, create() included.

    Each new child must join the volume: the blocks the earlier children wrote must survive.
    """
    report = run_readme(tmp_path, "spawn-top-level", method, maxtasks=2)
    assert len(report["writers"]) >= 4  # 8 chunks of 8 blocks, 2 chunks per worker: new workers joined
    check_volume(tmp_path, report, 256, 64)


def test_threads_write_blocks(tmp_path: Path) -> None:
    d = Directory(100, 90, 80, np.uint16, tmp_path / "volume.blockfs", 32, 32, 32)
    d.create()
    d.start_writer_processes()
    items = ((readme_block(x, y, z, d.get_block_size(x, y, z)), x, y, z) for x, y, z in d.grid.origins())
    assert d.write_blocks(items, n_threads=2) == d.grid.n_blocks == 36
    d.close()
    r = Directory.open(tmp_path / "volume.blockfs")
    assert len(r) == 36
    for x, y, z in r.grid.origins():
        assert same(r.read_block(x, y, z), readme_block(x, y, z, r.get_block_size(x, y, z)))
    assert sorted(os.listdir(tmp_path)) == ["volume.blockfs", "volume.blockfs.0"]  # one process, one block file


def test_threads_and_a_process_pool_together(tmp_path: Path) -> None:
    """The creating process writes too (threads), alongside forked writers: K = 3 writer processes."""
    import multiprocessing

    d = Directory(64, 64, 64, np.int32, tmp_path / "volume.blockfs", 16, 16, 16)
    d.create()
    origins = list(d.grid.origins())
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        async_result = pool.starmap_async(_write_seeded, [(d, *o) for o in origins[32:]])
        d.write_blocks(((random_block((16, 16, 16), "int32", o), *o) for o in origins[:32]), n_threads=2)
        pids = set(async_result.get(timeout=60))
    d.close()
    r = Directory.open(tmp_path / "volume.blockfs")
    assert len(r) == 64
    for o in origins:
        assert same(r.read_block(*o), random_block((16, 16, 16), "int32", o))
    files = os.listdir(tmp_path)
    assert len(files) <= len(pids) + 2  # pool writers + this process's block file + directory


def test_pickled_copies_in_one_process_share_its_block_file(tmp_path: Path) -> None:
    """A worker gets a fresh unpickled copy of the directory with each task (or chunk of tasks).

    Those copies must share the process's one block file: K writer processes make
    K block files, however many tasks they run, and no file descriptor leaks.
    """
    import pickle

    d = Directory(64, 64, 64, np.uint8, tmp_path / "volume.blockfs", 8, 8, 8)
    d.create()
    payload = pickle.dumps(d)
    fds_before = len(os.listdir("/proc/self/fd"))
    for x, y, z in list(d.grid.origins())[:50]:
        copy = pickle.loads(payload)
        copy.write_block(np.full((8, 8, 8), 1, np.uint8), x, y, z)
        del copy
    fds_after = len(os.listdir("/proc/self/fd"))
    d.close()
    assert len(Directory.open(tmp_path / "volume.blockfs")) == 50
    assert sorted(os.listdir(tmp_path)) == ["volume.blockfs", "volume.blockfs.0"]
    assert fds_after - fds_before <= 2


def _write_seeded(d: Directory, x: int, y: int, z: int) -> int:
    d.write_block(random_block((16, 16, 16), "int32", (x, y, z)), x, y, z)
    return os.getpid()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_readme_full_size(tmp_path: Path, method: str) -> None:
    """The README at its real size: 1024^3 uint16 in 64^3 blocks (4096 blocks, 2 GiB)."""
    variant = "top-level" if method == "fork" else "spawn-top-level"
    report = run_readme(tmp_path, variant, method, size=1024, block=64, timeout=1800)
    check_volume(tmp_path, report, 1024, 64)
