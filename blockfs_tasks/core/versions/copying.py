"""Compaction by copying, for filesystems that cannot punch holes: live frames to new block files.

Every block file that holds dead bytes is replaced by a new one holding only
its live frames, and every commit file and then the working directory file
that name it are republished pointing at the copies. A commit's id hashes
its entries' sizes and CRC-32Cs, never their offsets or block file names
(:func:`.commits.tree_digest`), so a republished commit keeps its id; this
is checked for each one before it is published. The steps, each durable
before the next starts:

1. each new block file ``vol.blockfs.compact-<k>`` (a name only compaction
   makes, claimed with ``O_EXCL``) is written, every frame checked against
   its CRC-32C, and fsynced; then the folder is fsynced;
2. the replaced files join the list of retired block files,
   ``vol.blockfs.compaction`` (name -> time retired), published atomically;
3. each commit file, then the working directory file, is republished
   atomically (temporary file, fsync, rename, fsync of the folder);
4. each listed file that no commit file or working directory names is
   removed once retired ``grace_seconds`` ago (like unreachable commits:
   a reader that opened a version before, or a batch commit, which takes
   no session, built on a commit read before, may still name it); the
   rest wait for a later compaction.

Nothing published ever points at unsynced bytes, and a live frame is never
rewritten in place: the old block file stays whole until nothing names it.
Killed at any point, every file still names complete, verified frames; the
next compaction first goes through the list (a listed file that something
names again is an ordinary block file) and removes the ``compact-<k>``
files that nothing names and no list holds (a copy killed before step 3),
then compacts what is left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..atomic import fsync_folder, write_all, write_atomically
from ..codec import checksum
from ..errors import ChecksumError, CorruptIndexError, FormatError
from ..naming import (
    commit_id_of,
    compacted_block_name,
    compacted_block_names,
    compaction_plan_name,
    resolve_block_path,
)
from . import refs
from .commits import read_commit, tree_digest, write_directory
from .trees import Tree, drop_unused_names, load_tree

logger = logging.getLogger(__name__)


@dataclass
class _Copy:
    """One block file's live frames moved to a new file: old offsets (sorted) -> new offsets."""

    name: str | None  # the new file's name, relative (None: no live frame, nothing to copy)
    old_offsets: np.ndarray
    new_offsets: np.ndarray


def names_in_use(directory_path: str, sources: list[str]) -> set[str]:
    """Block file paths that some entry of the directory files ``sources`` (commits, the working one) points into."""
    used: set[str] = set()
    for source in sources:
        try:
            tree = load_tree(source)
        except FileNotFoundError:
            continue
        slots = np.unique(tree.index["file"][tree.index["file"] > 0])
        used.update(resolve_block_path(directory_path, tree.names[int(i) - 1]) for i in slots)
    return used


def _publish_working(directory_path: str, tree: Tree) -> None:
    """Republish the working directory file; HEAD keeps knowing it equals its base if it did."""
    state = refs.read_head(directory_path)
    unchanged = state.working is not None and state.working == refs.working_identity(directory_path)
    write_directory(directory_path, tree)
    if unchanged:
        refs.write_head(directory_path, refs.HeadState(state.branch, state.base, refs.working_identity(directory_path)))


def _forget_names(directory_path: str, paths: set[str]) -> None:
    """Republish the working directory file without the names of ``paths`` (which no entry points into)."""
    tree = load_tree(directory_path)
    keep = [i for i, n in enumerate(tree.names) if resolve_block_path(directory_path, n) not in paths]
    if len(keep) == len(tree.names):
        return
    remap = np.zeros(len(tree.names) + 1, np.uint32)
    remap[np.array(keep, np.int64) + 1] = np.arange(1, len(keep) + 1, dtype=np.uint32)
    tree.index["file"] = remap[tree.index["file"]]
    tree.names = [tree.names[i] for i in keep]
    tree.page_crcs = None
    _publish_working(directory_path, tree)


def _read_plan(directory_path: str) -> dict[str, float]:
    """The retired block files (names relative to the volume's folder) -> when they were retired (Unix time)."""
    plan = compaction_plan_name(directory_path)
    try:
        with open(plan, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(raw)["Retire"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{plan}: not a compaction list ({e}); nothing was compacted") from e


def _write_plan(directory_path: str, retired: dict[str, float]) -> None:
    plan = compaction_plan_name(directory_path)
    if retired:
        write_atomically(plan, [json.dumps({"Retire": retired}, sort_keys=True).encode()])
    elif os.path.exists(plan):
        os.unlink(plan)
        fsync_folder(plan)


def retire(directory_path: str, sources: list[str], grace_seconds: float) -> list[str]:
    """Keep the list of retired block files: remove those nobody names once retired ``grace_seconds`` ago.

    A listed file that a directory file
    names again (a compaction killed before it republished them all) leaves
    the list: it is an ordinary block file again. Copies that nothing names
    and that are not listed (a compaction killed before publishing) go at
    once: nothing ever pointed at them. Returns the files still waiting.
    """
    used = names_in_use(directory_path, sources)
    now = time.time()
    retired = _read_plan(directory_path)
    waiting, gone = {}, set()
    for name, since in retired.items():
        path = resolve_block_path(directory_path, name)
        if path in used or not os.path.exists(path):
            continue
        if now - since < grace_seconds:
            waiting[name] = since
        else:
            gone.add(path)
    listed = {resolve_block_path(directory_path, n) for n in retired}
    gone.update(p for p in compacted_block_names(directory_path) if p not in used and p not in listed)
    if gone:
        _forget_names(directory_path, gone)  # the working file stops naming them first (see _remap)
        for path in sorted(gone):
            os.unlink(path)
        fsync_folder(directory_path)
    if waiting != retired:
        _write_plan(directory_path, waiting)
    return sorted(waiting)


def copy_compact(directory_path: str, sources: list[str], dead: dict[str, int], grace_seconds: float) -> list[str]:
    """Move the live frames of the block files with dead bytes (``dead``: path -> bytes) to new files.

    ``sources`` are the directory files whose frames are live: kept commit
    files, then the working directory file (last). The replaced files are
    removed once retired ``grace_seconds`` ago (see :func:`retire`). Returns
    the retired files still waiting.
    """
    trees = {source: load_tree(source) for source in sources}
    targets = sorted(path for path, n in dead.items() if n > 0)
    if not targets:
        return retire(directory_path, sources, grace_seconds)
    frames = _frames(directory_path, trees.values(), set(targets))
    copies = {path: _copy_file(directory_path, path, frames.get(path)) for path in targets}
    fsync_folder(directory_path)
    retired = _read_plan(directory_path)  # listed before anything is republished
    now = time.time()
    for path in targets:
        retired.setdefault(os.path.relpath(path, os.path.dirname(directory_path)), now)
    _write_plan(directory_path, retired)
    for source, tree in trees.items():  # commits first, the working directory file last
        moved = _remap(directory_path, tree, copies, working=source == directory_path)
        if moved is None:
            continue
        if source == directory_path:
            _publish_working(directory_path, moved)
        else:
            info = read_commit(directory_path, str(commit_id_of(directory_path, os.path.basename(source))))
            if tree_digest(moved) != info.tree:
                raise CorruptIndexError(f"{source}: the copied entries no longer hash to the commit's tree; "
                                        f"the commit was not republished")
            write_directory(source, moved, info)
    logger.info("%s: copied the live frames of %d block file(s) to new ones", directory_path, len(targets))
    return retire(directory_path, sources + _new_commits(directory_path, sources), grace_seconds)


def _new_commits(directory_path: str, sources: list[str]) -> list[str]:
    """Commit files that appeared since ``sources`` were listed (a batch commit needs no session)."""
    known = set(sources)
    folder = os.path.dirname(directory_path)
    return [p for p in (os.path.join(folder, n) for n in os.listdir(folder))
            if p not in known and commit_id_of(directory_path, os.path.basename(p)) is not None]


def _frames(directory_path: str, trees: Iterable[Tree], targets: set[str]) -> dict[str, np.ndarray]:
    """Block file path (of ``targets``) -> unique (offset, size, crc32c) rows of its live frames, by offset."""
    parts: dict[str, list[np.ndarray]] = {}
    for tree in trees:
        for slot, name in enumerate(tree.names):
            path = resolve_block_path(directory_path, name)
            if path not in targets:
                continue
            entries = tree.index[tree.index["file"] == slot + 1]
            rows = np.stack([entries["offset"].astype(np.uint64), entries["size"].astype(np.uint64),
                             entries["crc32c"].astype(np.uint64)], axis=1)
            parts.setdefault(path, []).append(rows)
    out = {}
    for path, chunks in parts.items():
        rows = np.unique(np.concatenate(chunks), axis=0)  # sorted by offset
        if len(np.unique(rows[:, 0])) != len(rows):
            raise CorruptIndexError(f"{path}: two versions name different frames at the same offset; "
                                    f"nothing was compacted")
        out[path] = rows
    return out


def _copy_file(directory_path: str, path: str, rows: np.ndarray | None) -> _Copy:
    """Write the frames ``rows`` of block file ``path`` to a new block file, each checked, then fsync it."""
    if rows is None or len(rows) == 0:
        empty = np.zeros(0, np.uint64)
        return _Copy(None, empty, empty)
    number = 0
    while True:
        new = compacted_block_name(directory_path, number)
        try:
            out = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            number += 1
    new_offsets = np.zeros(len(rows), np.uint64)
    try:
        src = os.open(path, os.O_RDONLY)
        try:
            at = 0
            for i, (offset, size, crc) in enumerate(rows.tolist()):
                data = os.pread(src, size, offset)
                if len(data) != size or checksum(data) != crc:
                    raise ChecksumError(f"{path}: the frame of {size} bytes at offset {offset} does not match "
                                        f"its CRC-32C; nothing was compacted (blockfs-verify names its block)")
                write_all(out, data)
                new_offsets[i] = at
                at += size
        finally:
            os.close(src)
        os.fsync(out)
    finally:
        os.close(out)
    return _Copy(os.path.basename(new), rows[:, 0].copy(), new_offsets)


def _remap(directory_path: str, tree: Tree, copies: dict[str, _Copy], working: bool) -> Tree | None:
    """``tree`` pointing at the copies instead of the replaced files (None: it names none of them).

    A commit forgets the replaced files' names. The working directory file
    keeps naming them (without entries) until they are removed: a writing
    session takes a numbered block file that its directory does not name for
    one of its own, torn if it holds bytes past its journal.
    """
    out = tree.copy()
    changed = False
    replaced = []
    for slot, name in enumerate(tree.names):
        copy = copies.get(resolve_block_path(directory_path, name))
        if copy is None:
            continue
        changed = True
        mine = np.flatnonzero(out.index["file"] == slot + 1)
        if copy.name is None:
            if len(mine):
                raise CorruptIndexError(f"{name}: frames named by a version were not copied")
            continue
        offsets = out.index["offset"][mine].astype(np.uint64)
        where = np.searchsorted(copy.old_offsets, offsets)
        if len(mine) and (where.max() >= len(copy.old_offsets) or np.any(copy.old_offsets[where] != offsets)):
            raise CorruptIndexError(f"{name}: a frame named by a version was not copied")
        out.index["offset"][mine] = copy.new_offsets[where]
        out.names[slot] = copy.name
        replaced.append(name)
    if not changed:
        return None
    if working:
        out.names += [n for n in replaced if n not in out.names]
        return out
    return drop_unused_names(out)
