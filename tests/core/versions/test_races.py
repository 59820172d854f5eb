"""P spawned processes race commits onto one branch: no commit is lost, overlapping ones conflict.

Each process writes its own batch (its own block file and fragment, no
session), all start from the same base commit, wait at a barrier, then
commit onto ``main`` at once. Every process changes a block of its own;
processes 0 and 1 also change the same block differently, so exactly one of
those two fails with a conflict naming it, and every other commit is in the
branch's linear history with the union of the changes.
"""

from __future__ import annotations

import multiprocessing

import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core import versions as V
from blockfs_tasks.core.batch import BatchWriter
from blockfs_tasks.core.errors import VersionConflictError

from .conftest import ORIGINS, block, values_of, write

SHARED = ORIGINS[7]


def _racer(path: str, i: int, base: str, barrier: multiprocessing.synchronize.Barrier, results) -> None:
    changes = {ORIGINS[i]: 1000 + i}
    if i < 2:
        changes[SHARED] = 2000 + i
    with BatchWriter(path, fmt.read_spec(path), 100 + i) as w:
        for origin, value in changes.items():
            w.write_block(block(value), *origin)
    barrier.wait()
    try:
        results.put((i, V.commit_batches(path, [100 + i], f"racer {i}", base=base)))
    except VersionConflictError as e:
        results.put((i, f"conflict: {e}"))


@pytest.mark.parametrize("processes", [4])
def test_racing_committers_lose_nothing(volume, processes: int) -> None:
    write(volume, {ORIGINS[0]: 1})
    base = Directory.open(volume).commit("base")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(volume, i, base, barrier, results)) for i in range(processes)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    conflicts = {i for i, r in outcome.items() if r.startswith("conflict")}
    assert len(conflicts) == 1 and conflicts <= {0, 1}, outcome
    assert str(SHARED) in outcome[next(iter(conflicts))]  # the conflict names the block both changed
    committed = {i: r for i, r in outcome.items() if not r.startswith("conflict")}
    history = V.history(volume, V.read_ref(volume, V.HEADS, "main").commit)
    assert [c.id for c in history][-1] == base
    assert sorted(c.id for c in history[:-1]) == sorted(committed.values())  # linear, every commit in it
    winner = next(i for i in (0, 1) if i in committed)
    want = {ORIGINS[0]: 1, SHARED: 2000 + winner}
    want.update({ORIGINS[i]: 1000 + i for i in committed})
    assert values_of(f"{volume}@main") == want
