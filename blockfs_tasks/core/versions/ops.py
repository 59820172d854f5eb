"""Commit, checkout, diff, branch and tag: the operations on a volume's versions.

Commit and checkout take the volume's writing session (:mod:`..session`) for
their duration, so they refuse while a writer has the volume open (its
blocks are not consistent until ``close()``; commit what is published, then
keep writing) and no writer starts meanwhile.

Committing onto a branch is optimistic: the commit is built on the branch's
head as read, and the branch moves only if still there (a ``link()``
compare-and-swap, see :mod:`.refs`); otherwise the commit is rebuilt on the
new head and tried again. The blocks a committer changed are those that
differ between its base (the commit it started from) and what it commits;
if a commit that got in first changed any of the same positions
differently, :class:`VersionConflictError` names them; disjoint changes are
rebased automatically. So every commit that returns is in the branch's
linear history, whatever the number of committing processes or hosts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import format as fmt
from .. import session as sessions
from ..atomic import sweep_temporaries
from ..errors import DirtyVolumeError, FormatError, RefError, VersionConflictError, VolumeBusyError
from ..journal import journal_files
from ..merge import IndexMerger
from ..naming import commit_file_name, fragment_name, ref_folder
from . import refs
from .commits import (
    CommitInfo,
    commit_id,
    copy_commit,
    default_author,
    load_commit_tree,
    now_iso,
    read_commit,
    resolve,
    tree_digest,
    write_commit,
    write_directory,
)
from .trees import Tree, changed_positions, load_tree, overlay, same_entries

logger = logging.getLogger(__name__)

MAX_NAMED = 20  # positions named in a conflict message


@contextmanager
def exclusive(directory_path: str, what: str) -> Iterator[None]:
    """Hold the volume's writing session for an operation on the whole volume; refuse unmerged journals."""
    session = sessions.acquire(directory_path)
    try:
        sweep_temporaries(directory_path)  # left by a killed commit, checkout, delete or compaction
        for kind in refs.KINDS:
            for name in refs.list_refs(directory_path, kind, deleted=True):
                sweep_temporaries(ref_folder(directory_path, kind, name) + os.sep)
        pending = journal_files(directory_path)
        if pending:
            raise VolumeBusyError(
                f"{directory_path}: blocks of a writing session that never closed are not merged "
                f"({', '.join(pending)}); Directory.open({directory_path!r}, 'r+').close() merges them. "
                f"Nothing was {what}"
            )
        yield
    finally:
        session.release()


def publish_working(directory_path: str, tree: Tree, current: Tree) -> None:
    """Publish ``tree`` as the working directory file, still naming every block file ``current`` named.

    A writing session tells its own new block files from those of the
    directory it opened by their names, so a name, once in the working
    directory, stays in it (unused names cost a few bytes of JSON).
    """
    names = list(tree.names)
    names += [n for n in current.names if n not in set(tree.names)]
    write_directory(directory_path, Tree(tree.spec, names, tree.index))


@dataclass(frozen=True)
class CommitResult:
    """A commit made (or found already made) and the tree it holds."""

    id: str
    tree: Tree
    rebased: bool  # built on a head other than the committer's base
    created: bool  # False: the branch head already was this commit (a redo)


def _origins(spec: fmt.VolumeSpec, positions: np.ndarray) -> str:
    shown = ", ".join(str(spec.grid.origin(int(p))) for p in positions[:MAX_NAMED])
    more = f" and {len(positions) - MAX_NAMED} more" if len(positions) > MAX_NAMED else ""
    return f"{len(positions)} block(s) at (x, y, z) {shown}{more}"


def commit_tree(
    directory_path: str,
    branch: str,
    base: str | None,
    source: Tree,
    message: str,
    author: str | None = None,
    extra: dict[str, Any] | None = None,
) -> CommitResult:
    """Commit ``source`` (the committer's tree, built from commit ``base``) onto ``branch``.

    Returns the commit; raises :class:`VersionConflictError` if a commit that
    reached the branch after ``base`` changed some of the same blocks otherwise.
    A branch whose head already holds this very tree with this very message
    (a commit redone after a crash) is left as it is and its head returned.
    """
    refs.check_ref_name(branch)
    base_tree = load_commit_tree(directory_path, base) if base else Tree.empty(source.spec)
    if not base_tree.spec.same_volume(source.spec) or base_tree.spec.grid != source.spec.grid:
        raise FormatError(f"{directory_path}: the volume's grid, dtype or codec differ from commit {base}")
    ours = changed_positions(base_tree, source)
    while True:
        head = refs.read_ref(directory_path, refs.HEADS, branch)
        rebased = head.commit is not None and head.commit != base
        if not rebased:
            tree, parent_tree = source, base_tree
        else:
            parent_tree = load_commit_tree(directory_path, head.commit)  # type: ignore[arg-type]  # rebased: set
            theirs = changed_positions(base_tree, parent_tree)
            both = np.intersect1d(ours, theirs, assume_unique=True)
            clash = both[~same_entries(source, parent_tree, both)]
            if len(clash):
                raise VersionConflictError(
                    f"{directory_path}: branch {branch!r} moved to {head.commit} since {base or 'the start'}, "
                    f"and that changed the same blocks differently: {_origins(source.spec, clash)}; "
                    f"nothing was committed"
                )
            tree = overlay(parent_tree, source, ours)
            tree.spec = source.spec
        parents = [head.commit] if head.commit else []
        if not head.commit:
            changed = np.flatnonzero(tree.index["file"])
        elif not rebased:
            changed = ours  # tree is source, parent is base
        else:
            changed = changed_positions(parent_tree, tree)
        if head.commit and len(changed) == 0 and read_commit(directory_path, head.commit).message == message:
            return CommitResult(head.commit, tree, rebased, False)
        digest = tree_digest(tree)
        cid = commit_id(tree.spec, parents, message, digest)
        info = CommitInfo(cid, tuple(parents), message, author or default_author(), now_iso(), len(changed),
                          dict(extra or {}), digest)
        write_commit(directory_path, tree, info)
        if refs.move_ref(directory_path, refs.HEADS, branch, head, cid):
            logger.info("%s: commit %s on %s (%d blocks changed)", directory_path, cid, branch, len(changed))
            return CommitResult(cid, tree, rebased, True)
        logger.debug("%s: branch %s moved meanwhile; rebuilding the commit", directory_path, branch)


def commit_working(
    directory_path: str, message: str, author: str | None = None, extra: dict[str, Any] | None = None
) -> str:
    """Commit the working volume onto its checked-out branch; return the commit id.

    If the branch moved (another committer), the working volume's own changes
    are rebased onto it and the working directory file is republished with
    the result, so it stays the head of its branch.
    """
    with exclusive(directory_path, "committed"):
        state = refs.read_head(directory_path)
        if state.branch is None:
            raise RefError(
                f"{directory_path}: the working volume has a commit checked out, not a branch; "
                f"'blockfs-version branch VOL NAME' and 'checkout VOL NAME' first"
            )
        if state.base is not None and state.working == refs.working_identity(directory_path):
            cid = _commit_unchanged(directory_path, state.branch, state.base, message, author, extra)
            if cid is not None:
                refs.write_head(directory_path, refs.HeadState(state.branch, cid, state.working))
                return cid
        working = load_tree(directory_path)
        result = commit_tree(directory_path, state.branch, state.base, working, message, author, extra)
        if result.rebased and len(changed_positions(working, result.tree)):
            publish_working(directory_path, result.tree, working)
        refs.write_head(directory_path, refs.HeadState(state.branch, result.id, refs.working_identity(directory_path)))
        return result.id


def _commit_unchanged(
    directory_path: str, branch: str, base: str, message: str, author: str | None, extra: dict[str, Any] | None
) -> str | None:
    """Commit a working volume still equal to its base, which is the branch head: the index is copied, not read.

    None if the branch moved meanwhile (the caller then takes the general way).
    """
    head = refs.read_ref(directory_path, refs.HEADS, branch)
    if head.commit != base:
        return None
    info = read_commit(directory_path, base)
    if info.message == message:  # a redo: the head already is this commit
        return base
    spec = fmt.read_spec(commit_file_name(directory_path, base))
    cid = commit_id(spec, [base], message, info.tree)
    commit = CommitInfo(cid, (base,), message, author or default_author(), now_iso(), 0, dict(extra or {}), info.tree)
    copy_commit(directory_path, base, commit)
    if refs.move_ref(directory_path, refs.HEADS, branch, head, cid):
        return cid
    return None


def commit_batches(
    directory_path: str,
    numbers: Sequence[int],
    message: str,
    branch: str = refs.DEFAULT_BRANCH,
    base: str | None = None,
    author: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Commit the blocks of batches ``numbers`` (batch API fragments) onto ``branch``; return the id.

    Needs no writing session: any number of processes, on any hosts sharing
    the folder, may commit their own batches at once. ``base`` is the commit
    the batches were computed from (default: the branch head as it is now);
    a commit that reached the branch after it and changed any of the same
    blocks otherwise makes this one fail with :class:`VersionConflictError`.
    The working volume is not touched: it catches up at its next
    ``commit`` or ``checkout`` of the branch.
    """
    if base is None:
        base = refs.read_ref(directory_path, refs.HEADS, branch).commit
    if base is not None:
        source = load_commit_tree(directory_path, base)
    else:
        source = Tree.empty(fmt.read_spec(directory_path))
    merger = IndexMerger(directory_path, source.index, source.names)
    for number in numbers:
        path = fragment_name(directory_path, number)
        fragment = fmt.read_fragment(path, strict=True)
        if not fragment.spec.same_volume(source.spec):
            raise FormatError(f"{path}: fragment was written for another volume")
        merger.apply(fragment.entries, path, expected_file=number)
    source = Tree(source.spec, merger.block_names, merger.index)
    return commit_tree(directory_path, branch, base, source, message, author, extra).id


def checkout(directory_path: str, ref: str, force: bool = False) -> str:
    """Make the working volume the commit ``ref`` names; a branch name also checks that branch out.

    Refuses (:class:`DirtyVolumeError`) when the working volume holds blocks
    not in its base commit, unless ``force`` (they stay in the block files
    until a compaction, but no directory points at them any more).
    """
    with exclusive(directory_path, "checked out"):
        state = refs.read_head(directory_path)
        working = load_tree(directory_path)
        if not force:
            base = load_commit_tree(directory_path, state.base) if state.base else Tree.empty(working.spec)
            dirty = changed_positions(base, working)
            if len(dirty):
                raise DirtyVolumeError(
                    f"{directory_path}: the working volume has uncommitted changes "
                    f"({_origins(working.spec, dirty)}); commit them, or checkout --force to drop them"
                )
        cid = resolve(directory_path, ref)
        is_branch = refs.read_ref(directory_path, refs.HEADS, ref).commit == cid if _valid(ref) else False
        publish_working(directory_path, load_commit_tree(directory_path, cid), working)
        refs.write_head(directory_path, refs.HeadState(ref if is_branch else None, cid,
                                                       refs.working_identity(directory_path)))
        return cid


def _valid(name: str) -> bool:
    try:
        refs.check_ref_name(name)
    except RefError:
        return False
    return True


def tree_of(directory_path: str, ref: str | None) -> Tree:
    """The tree a ref names; None or "WORKING": the working volume."""
    if ref is None or ref == "WORKING":
        return load_tree(directory_path)
    return load_commit_tree(directory_path, resolve(directory_path, ref))


def diff(directory_path: str, a: str | None, b: str | None) -> list[tuple[int, int, int]]:
    """Origins (x, y, z) of the blocks that differ between two versions (None: the working volume)."""
    ta, tb = tree_of(directory_path, a), tree_of(directory_path, b)
    if ta.spec.grid != tb.spec.grid:
        raise FormatError(f"{directory_path}: {a} and {b} have different block grids")
    return [ta.spec.grid.origin(int(p)) for p in changed_positions(ta, tb)]


def create_ref(directory_path: str, kind: str, name: str, ref: str | None = None) -> str:
    """Create branch or tag ``name`` at ``ref`` (default: the working volume's base commit); return its id.

    A ref that exists is an error, unless it already points at that very commit (a redo).
    """
    refs.check_ref_name(name)
    cid = resolve(directory_path, ref or "HEAD")
    other = refs.TAGS if kind == refs.HEADS else refs.HEADS
    if refs.read_ref(directory_path, other, name).commit is not None:
        raise RefError(f"{directory_path}: {name!r} names a {'tag' if other == refs.TAGS else 'branch'} already; "
                       f"a branch and a tag never share a name")
    while True:
        value = refs.read_ref(directory_path, kind, name)
        if value.commit == cid:
            return cid
        if value.commit is not None:
            what = "branch" if kind == refs.HEADS else "tag"
            raise RefError(f"{directory_path}: {what} {name!r} exists (at {value.commit}); delete it first")
        if refs.move_ref(directory_path, kind, name, value, cid):
            return cid


def delete_ref(directory_path: str, kind: str, name: str) -> str:
    """Delete branch or tag ``name``; return the commit it pointed at (its blocks stay until compaction)."""
    what = "branch" if kind == refs.HEADS else "tag"
    if kind == refs.HEADS and refs.read_head(directory_path).branch == name:
        raise RefError(f"{directory_path}: branch {name!r} is checked out; check out another one first")
    while True:
        value = refs.read_ref(directory_path, kind, refs.check_ref_name(name))
        if value.commit is None:
            raise RefError(f"{directory_path}: no {what} named {name!r}")
        if refs.move_ref(directory_path, kind, name, value, None):
            return value.commit


def version_path(directory_path: str, ref: str) -> str:
    """The commit file that ``vol.blockfs@ref`` opens."""
    return commit_file_name(directory_path, resolve(directory_path, ref))
