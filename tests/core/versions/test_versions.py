"""Commits, branches, tags, checkout, diff and VOL@REF: the semantics of versions."""

from __future__ import annotations

import os

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core import versions as V
from blockfs_tasks.core.errors import (
    DirtyVolumeError,
    ReadOnlyError,
    RefError,
    VersionConflictError,
    VolumeInUseError,
)
from blockfs_tasks.core.naming import commit_file_name

from .conftest import B, block, values_of, write


def test_commit_tag_fix_diff_and_open_versions(volume):
    write(volume, {(0, 0, 0): 1, (B, 0, 0): 2})
    c1 = Directory.open(volume).commit("first")
    assert len(c1) == 40 and os.path.exists(commit_file_name(volume, c1))
    assert V.create_ref(volume, V.TAGS, "v1") == c1
    write(volume, {(0, 0, 0): 3, (0, B, 0): 4})
    assert V.diff(volume, "v1", None) == [(0, 0, 0), (0, B, 0)]
    c2 = Directory.open(volume).commit("fix")
    assert V.diff(volume, "v1", "main") == [(0, 0, 0), (0, B, 0)]
    assert values_of(volume + "@v1") == {(0, 0, 0): 1, (B, 0, 0): 2}
    assert values_of(volume + "@main") == values_of(volume) == {(0, 0, 0): 3, (B, 0, 0): 2, (0, B, 0): 4}
    assert values_of(f"{volume}@{c1[:6]}") == values_of(volume + "@v1")
    log = V.history(volume, c2)
    assert [(c.id, c.message, c.changed, c.parents) for c in log] == [
        (c2, "fix", 2, (c1,)), (c1, "first", 2, ())]


def test_a_version_is_read_only_and_unknown_refs_are_named(volume):
    write(volume, {(0, 0, 0): 1})
    Directory.open(volume).commit("one")
    with pytest.raises(ReadOnlyError):
        Directory.open(volume + "@main", "r+")
    with pytest.raises(RefError, match="nope"):
        Directory.open(volume + "@nope")


def test_commit_ids_are_content_hashes(volume, tmp_path):
    write(volume, {(0, 0, 0): 1})
    c1 = Directory.open(volume).commit("same message", author="a")
    # the same content, parents and message in another folder: same id, whatever the author and time
    other = str(tmp_path / "other")
    os.mkdir(other)
    copy = os.path.join(other, "vol.blockfs")
    d = Directory(2 * B, 2 * B, 2 * B, np.uint16, copy, x_block_size=B, y_block_size=B, z_block_size=B)
    d.create()
    d.write_block(block(1), 0, 0, 0)
    d.close()
    assert Directory.open(copy).commit("same message", author="b") == c1


def test_redoing_a_commit_is_a_no_op(volume):
    write(volume, {(0, 0, 0): 1})
    c1 = Directory.open(volume).commit("run 1")
    assert Directory.open(volume).commit("run 1") == c1
    assert len(V.history(volume, c1)) == 1
    c2 = Directory.open(volume).commit("run 2")  # nothing changed, another message: an empty commit
    assert c2 != c1 and V.read_commit(volume, c2).changed == 0


def test_commit_refuses_while_a_writing_session_is_open(volume):
    d = Directory.open(volume, "r+")
    d.write_block(block(1), 0, 0, 0)
    with pytest.raises(VolumeInUseError, match="close"):
        d.commit("too early")
    with pytest.raises(VolumeInUseError):
        V.commit_working(volume, "from elsewhere")
    d.close()
    assert values_of(volume + "@" + Directory.open(volume).commit("now")) == {(0, 0, 0): 1}


def test_branches_checkout_and_dirty_working_volume(volume):
    write(volume, {(0, 0, 0): 1})
    c1 = Directory.open(volume).commit("base")
    V.create_ref(volume, V.HEADS, "fix")
    assert V.checkout(volume, "fix") == c1
    write(volume, {(B, 0, 0): 2})
    c2 = Directory.open(volume).commit("on fix")
    assert V.read_ref(volume, V.HEADS, "fix").commit == c2
    assert V.read_ref(volume, V.HEADS, "main").commit == c1
    write(volume, {(0, B, 0): 9})
    with pytest.raises(DirtyVolumeError, match="uncommitted"):
        V.checkout(volume, "main")
    V.checkout(volume, "main", force=True)
    assert values_of(volume) == {(0, 0, 0): 1}
    with pytest.raises(RefError, match="checked out"):
        V.delete_ref(volume, V.HEADS, "main")
    V.delete_ref(volume, V.HEADS, "fix")
    assert "fix" not in V.list_refs(volume, V.HEADS)
    V.checkout(volume, c2[:8])  # a bare commit: committing needs a branch
    with pytest.raises(RefError, match="branch"):
        Directory.open(volume).commit("detached")


def test_tags_are_created_once(volume):
    write(volume, {(0, 0, 0): 1})
    c1 = Directory.open(volume).commit("one")
    V.create_ref(volume, V.TAGS, "t")
    write(volume, {(0, 0, 0): 2})
    Directory.open(volume).commit("two")
    with pytest.raises(RefError, match="exists"):
        V.create_ref(volume, V.TAGS, "t", "main")
    assert V.create_ref(volume, V.TAGS, "t", c1) == c1  # a redo is fine
    V.delete_ref(volume, V.TAGS, "t")
    with pytest.raises(RefError):
        V.resolve(volume, "t")
    with pytest.raises(RefError, match="Invalid"):
        V.create_ref(volume, V.TAGS, "../x")


def test_disjoint_batch_commits_rebase_and_overlapping_ones_conflict(volume):
    from blockfs_tasks.core import format as fmt
    from blockfs_tasks.core.batch import BatchWriter

    write(volume, {(0, 0, 0): 1})
    base = Directory.open(volume).commit("base")
    spec = fmt.read_spec(volume)
    for number, origin, value in ((101, (B, 0, 0), 2), (102, (0, B, 0), 3), (103, (B, 0, 0), 4)):
        with BatchWriter(volume, spec, number) as w:
            w.write_block(block(value), *origin)
    a = V.commit_batches(volume, [101], "a", base=base)
    b = V.commit_batches(volume, [102], "b", base=base)  # disjoint: rebased onto a
    assert V.read_commit(volume, b).parents == (a,)
    assert values_of(f"{volume}@{b}") == {(0, 0, 0): 1, (B, 0, 0): 2, (0, B, 0): 3}
    with pytest.raises(VersionConflictError, match=r"\(16, 0, 0\)"):
        V.commit_batches(volume, [103], "c", base=base)
    # the working volume catches up when its branch is checked out again
    V.checkout(volume, "main")
    assert values_of(volume) == values_of(f"{volume}@{b}")


def test_working_commit_rebases_onto_a_moved_branch(volume):
    from blockfs_tasks.core import format as fmt
    from blockfs_tasks.core.batch import BatchWriter

    write(volume, {(0, 0, 0): 1})
    Directory.open(volume).commit("base")
    with BatchWriter(volume, fmt.read_spec(volume), 50) as w:
        w.write_block(block(7), B, B, B)
    V.commit_batches(volume, [50], "batch")
    write(volume, {(0, 0, 0): 5})
    c = Directory.open(volume).commit("working")
    assert values_of(volume) == values_of(f"{volume}@{c}") == {(0, 0, 0): 5, (B, B, B): 7}


def test_delete_clears_aligned_regions_only(volume):
    write(volume, {(0, 0, 0): 1, (B, 0, 0): 2, (0, 0, B): 3})
    d = Directory.open(volume)
    assert d.delete(0, 2 * B, 0, B, 0, B) == 2
    assert values_of(volume) == {(0, 0, B): 3}
    assert not np.any(Directory.open(volume)[0:B, 0:B, 0:2 * B])
    from blockfs_tasks.core.errors import OutOfBoundsError

    with pytest.raises(OutOfBoundsError, match="block grid"):
        d.delete(0, 3, 0, B, 0, B)
    with pytest.raises(OutOfBoundsError):
        d.delete(0, 3 * B, 0, B, 0, B)


def test_an_unchanged_commit_copies_its_base_and_gets_the_id_of_a_full_one(volume, tmp_path):
    import shutil

    write(volume, {(0, 0, 0): 1, (B, B, B): 2})
    base = Directory.open(volume).commit("base")
    other = tmp_path / "other"
    shutil.copytree(os.path.dirname(volume), other)
    copy = str(other / "vol.blockfs")
    fast = Directory.open(volume).commit("again")  # the working file is its base's: index copied
    state = V.read_head(copy)
    V.refs.write_head(copy, V.HeadState(state.branch, state.base, None))  # forget which file it was
    assert Directory.open(copy).commit("again") == fast  # read, diffed and written in full: same id
    info = V.read_commit(volume, fast)
    assert info.parents == (base,) and info.changed == 0
    assert values_of(f"{volume}@{fast}") == {(0, 0, 0): 1, (B, B, B): 2}
    with open(commit_file_name(volume, fast), "rb") as a, open(commit_file_name(copy, fast), "rb") as b:
        assert a.read()[-2000:] == b.read()[-2000:]  # the same index bytes


def test_create_and_batches_never_replace_the_block_files_of_commits(volume):
    """create() over a versioned volume is refused; a batch may redo its block file only with the same bytes."""
    from blockfs_tasks.core import format as fmt
    from blockfs_tasks.core.batch import BatchWriter
    from blockfs_tasks.core.errors import VolumeHasVersionsError

    spec = fmt.read_spec(volume)
    with BatchWriter(volume, spec, 101) as w:
        w.write_block(block(5), 0, 0, 0)
    first = V.commit_batches(volume, [101], "batch 101")
    before = values_of(f"{volume}@{first}")
    with BatchWriter(volume, spec, 101) as w:  # a rerun of the same batch: same bytes, allowed
        w.write_block(block(5), 0, 0, 0)
    with pytest.raises(VolumeHasVersionsError, match=r"batch 101 would replace its block file vol\.blockfs\.101"):
        with BatchWriter(volume, spec, 101) as w:
            w.write_block(block(6), 0, 0, 0)
    with pytest.raises(VolumeHasVersionsError, match=r"vol\.blockfs has versions .*create\(\) would delete"):
        Directory(2 * B, 2 * B, 2 * B, np.uint16, volume, x_block_size=B, y_block_size=B, z_block_size=B).create()
    assert values_of(f"{volume}@{first}") == before
    assert not [f for f in os.listdir(os.path.dirname(volume)) if ".tmp-" in f]
