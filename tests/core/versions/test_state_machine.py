"""A hypothesis state machine over commit, branch, tag, checkout, write, delete and compact.

Checked against an in-memory model after every step: the working volume and
every branch and tag read exactly the blocks the model says, and compaction
never changes what any of them reads.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from blockfs_tasks.core import Directory
from blockfs_tasks.core import versions as V
from blockfs_tasks.core.errors import DirtyVolumeError, RefError

from .conftest import ORIGINS, B, N, values_of, write

NAMES = st.sampled_from(["a", "b", "c"])
VALUES = st.integers(1, 60000)


class Versions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # tmpfs where there is one: hundreds of fsyncs per example (it punches holes too)
        self.folder = tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.path = os.path.join(self.folder.name, "vol.blockfs")
        d = Directory(N * B, N * B, N * B, np.uint16, self.path, x_block_size=B, y_block_size=B, z_block_size=B)
        d.create()
        d.close()
        self.working: dict = {}
        self.commits: dict[str, dict] = {}
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.branch: str | None = "main"
        self.base: str | None = None
        self.n = 0

    def teardown(self) -> None:
        self.folder.cleanup()

    def _dirty(self) -> bool:
        return self.working != (self.commits[self.base] if self.base else {})

    @rule(i=st.integers(0, len(ORIGINS) - 1), value=VALUES)
    def write_block(self, i: int, value: int) -> None:
        write(self.path, {ORIGINS[i]: value})
        self.working[ORIGINS[i]] = value

    @rule(i=st.integers(0, len(ORIGINS) - 1), whole_row=st.booleans())
    def delete(self, i: int, whole_row: bool) -> None:
        x, y, z = ORIGINS[i]
        x0, x1 = (0, N * B) if whole_row else (x, x + B)
        Directory.open(self.path).delete(x0, x1, y, y + B, z, z + B)
        for o in list(self.working):
            if x0 <= o[0] < x1 and o[1] == y and o[2] == z:
                del self.working[o]

    @rule()
    def commit(self) -> None:
        self.n += 1
        if self.branch is None:
            with pytest.raises(RefError):
                Directory.open(self.path).commit(f"c{self.n}")
            return
        cid = Directory.open(self.path).commit(f"c{self.n}")
        self.commits[cid] = dict(self.working)
        self.branches[self.branch] = self.base = cid

    @precondition(lambda self: self.base is not None)
    @rule(name=NAMES)
    def tag(self, name: str) -> None:
        if (name in self.tags and self.tags[name] != self.base) or name in self.branches:
            with pytest.raises(RefError):
                V.create_ref(self.path, V.TAGS, name)
            return
        V.create_ref(self.path, V.TAGS, name)
        self.tags[name] = self.base  # type: ignore[assignment]  # precondition

    @precondition(lambda self: self.base is not None)
    @rule(name=NAMES)
    def branch_here(self, name: str) -> None:
        if (name in self.branches and self.branches[name] != self.base) or name in self.tags:
            with pytest.raises(RefError):
                V.create_ref(self.path, V.HEADS, name)
            return
        V.create_ref(self.path, V.HEADS, name)
        self.branches[name] = self.base  # type: ignore[assignment]  # precondition

    @precondition(lambda self: bool(self.tags))
    @rule(data=st.data())
    def delete_tag(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.tags)))
        V.delete_ref(self.path, V.TAGS, name)
        del self.tags[name]

    @precondition(lambda self: bool(self.branches) or bool(self.tags))
    @rule(data=st.data(), force=st.booleans())
    def checkout(self, data: st.DataObject, force: bool) -> None:
        name = data.draw(st.sampled_from(sorted(set(self.branches) | set(self.tags))))
        if self._dirty() and not force:
            with pytest.raises(DirtyVolumeError):
                V.checkout(self.path, name)
            return
        assert V.checkout(self.path, name, force) == V.resolve(self.path, name)
        self.working = dict(self.commits[V.resolve(self.path, name)])
        self.base = V.resolve(self.path, name)
        self.branch = name if name in self.branches else None

    @rule()
    def compact(self) -> None:
        report = V.compact(self.path, grace_seconds=0)
        assert report.dead_bytes < 4096 * 8  # at most the partly live filesystem blocks are left

    @invariant()
    def reads_as_the_model(self) -> None:
        assert values_of(self.path) == self.working
        for name, cid in {**self.tags, **self.branches}.items():
            assert values_of(f"{self.path}@{name}") == self.commits[cid], name


def test_versions_state_machine() -> None:
    run = Versions.TestCase
    run.settings = settings(max_examples=10, stateful_step_count=15, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()


@pytest.mark.slow
def test_versions_state_machine_long() -> None:
    run = Versions.TestCase
    run.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()
