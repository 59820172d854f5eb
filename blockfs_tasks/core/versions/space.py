"""Live and dead bytes of a volume's block files, and compaction (punching out the dead ones, or copying).

Block files are append-only: a rewritten or deleted block leaves its old
frame behind. A frame is **live** while the working volume or any commit
that a branch, a tag or the working volume's base reaches points at it;
every other byte of a block file is **dead**. Compaction gives dead bytes
back to the filesystem with ``fallocate(PUNCH_HOLE | KEEP_SIZE)``: offsets
never change, so no directory or commit file is rewritten and no id
changes, and a compaction killed at any point leaves every live frame as it
was (running it again finishes the job). Only whole filesystem blocks that
hold no byte of a live frame are punched.

Unreachable commit files (of deleted branches and tags) are removed first,
like ``git gc``, only once older than a grace period (default one day): a
commit file is written just before its branch moves, so a younger one may
belong to a committer still at work; until removed, its frames count as live.
Block files that no directory or commit names (a batch being written and
not yet committed) are never touched. Compaction takes the writing session,
so it refuses to run while a writer has the volume open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigurationError, PunchHoleUnsupportedError
from ..naming import commit_file_name, resolve_block_path, volume_files
from .commits import commit_ids, reachable
from .copying import copy_compact, retire
from .ops import exclusive
from .trees import Tree, frames_by_file, load_tree

logger = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
DEFAULT_GRACE_SECONDS = 24 * 3600.0
METHODS = ("auto", "punch", "copy")


@dataclass
class SpaceReport:
    """Bytes of a volume's block files: live (referenced), dead (allocated, referenced by nothing)."""

    live_bytes: int = 0
    dead_bytes: int = 0
    block_files: int = 0
    commits_live: int = 0
    commits_removed: list[str] = field(default_factory=list)
    reclaimed_bytes: int = 0
    dead_by_file: dict[str, int] = field(default_factory=dict)  # block file path -> its dead bytes
    retired_waiting: list[str] = field(default_factory=list)  # block files copied away, removed after the grace

    def to_dict(self) -> dict[str, int | list[str]]:
        return {"live_bytes": self.live_bytes, "dead_bytes": self.dead_bytes, "block_files": self.block_files,
                "commits_live": self.commits_live, "commits_removed": self.commits_removed,
                "reclaimed_bytes": self.reclaimed_bytes, "retired_waiting": self.retired_waiting}


def _live_sources(directory_path: str, grace_seconds: float, remove: bool) -> tuple[list[str], int, list[str]]:
    """Directory files whose frames are live (kept commit files, then the working one); commits kept; removed."""
    keep = reachable(directory_path)
    now = time.time()
    removed = []
    for cid in commit_ids(directory_path):
        if cid in keep:
            continue
        path = commit_file_name(directory_path, cid)
        try:
            age = now - os.stat(path).st_mtime
        except FileNotFoundError:
            continue
        if remove and age >= grace_seconds:
            os.unlink(path)
            removed.append(cid)
        else:
            keep.add(cid)  # young: perhaps a committer's that is about to move its branch
    sources = [commit_file_name(directory_path, cid) for cid in sorted(keep)] + [directory_path]
    return sources, len(keep), removed


def _live_trees(directory_path: str, grace_seconds: float, remove: bool) -> tuple[list[Tree], int, list[str]]:
    """Trees whose frames are live; commits kept; unreachable commit files removed (if ``remove``)."""
    sources, n_commits, removed = _live_sources(directory_path, grace_seconds, remove)
    return [load_tree(source) for source in sources], n_commits, removed


def _live_frames(directory_path: str, trees: Iterable[Tree]) -> dict[str, np.ndarray]:
    """Block file path -> sorted, merged (start, end) byte ranges of its live frames."""
    parts: dict[str, list[np.ndarray]] = {}
    for tree in trees:
        for name in tree.names:  # a named file with no live frame left is all dead
            parts.setdefault(resolve_block_path(directory_path, name), [])
        for path, rows in frames_by_file(tree, directory_path).items():
            parts.setdefault(path, []).append(rows)
    out = {}
    for path, chunks in parts.items():
        if not chunks:
            out[path] = np.zeros((0, 2), np.uint64)
            continue
        rows = np.unique(np.concatenate(chunks), axis=0)
        starts, ends = rows[:, 0], rows[:, 0] + rows[:, 1]
        out[path] = _merge_ranges(starts, ends)
    return out


def _merge_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    running_end = np.maximum.accumulate(ends)
    new = np.ones(len(starts), bool)
    new[1:] = starts[1:] > running_end[:-1]
    groups = np.cumsum(new) - 1
    merged_ends = np.zeros(int(groups[-1]) + 1, np.uint64)
    np.maximum.at(merged_ends, groups, ends)
    return np.stack([starts[new], merged_ends], axis=1)


def _gaps(live: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Byte ranges of a file of ``size`` bytes that no live range covers."""
    gaps, at = [], 0
    for start, end in live.tolist():
        if start > at:
            gaps.append((at, min(start, size)))
        at = max(at, end)
    if at < size:
        gaps.append((at, size))
    return [(a, b) for a, b in gaps if b > a]


def _data_bytes(fd: int, start: int, end: int) -> int:
    """Bytes of [start, end) that hold data (not holes), by SEEK_DATA / SEEK_HOLE."""
    total, at = 0, start
    while at < end:
        try:
            data = os.lseek(fd, at, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data after ``at``
                break
            raise
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        total += hole - data
        at = hole
    return total


_libc = None


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    global _libc  # noqa: PLW0603  # the C library handle, loaded once: not state of the volume
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _survey(directory_path: str, live: dict[str, np.ndarray], punch: bool) -> SpaceReport:
    report = SpaceReport(block_files=len(live))
    for path, ranges in sorted(live.items()):
        report.live_bytes += int((ranges[:, 1] - ranges[:, 0]).sum())
        try:
            fd = os.open(path, os.O_RDWR if punch else os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            fs_block = os.fstatvfs(fd).f_bsize or 4096
            for start, end in _gaps(ranges, size):
                dead = _data_bytes(fd, start, end)
                if not dead:
                    continue
                first = -(-start // fs_block) * fs_block
                last = end if end == size else end // fs_block * fs_block
                if punch and last > first:
                    try:
                        _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first, last - first)
                    except OSError as e:
                        if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
                            raise PunchHoleUnsupportedError(
                                e.errno, f"{path}: this filesystem cannot punch holes (fallocate "
                                f"PUNCH_HOLE); nothing more was reclaimed", path) from e
                        raise
                    after = _data_bytes(fd, start, end)
                    report.reclaimed_bytes += dead - after
                    dead = after
                report.dead_bytes += dead
                report.dead_by_file[path] = report.dead_by_file.get(path, 0) + dead
            if punch:
                os.fsync(fd)
        finally:
            os.close(fd)
    return report


def _allocated(directory_path: str) -> int:
    """Bytes the filesystem holds for the volume's block, fragment and journal files."""
    total = 0
    for path in volume_files(directory_path):
        try:
            total += os.stat(path).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def space_usage(directory_path: str) -> SpaceReport:
    """Live and dead bytes of the volume's block files (read only; young unreachable commits count live)."""
    directory_path = os.path.abspath(directory_path)
    trees, n_commits, _ = _live_trees(directory_path, DEFAULT_GRACE_SECONDS, remove=False)
    report = _survey(directory_path, _live_frames(directory_path, trees), punch=False)
    report.commits_live = n_commits
    return report


def compact(
    directory_path: str, grace_seconds: float = DEFAULT_GRACE_SECONDS, method: str = "auto"
) -> SpaceReport:
    """Remove unreachable commits older than ``grace_seconds`` and reclaim every dead byte.

    ``method``: "punch" punches holes in place (raises
    :class:`PunchHoleUnsupportedError` where the filesystem cannot), "copy"
    copies live frames to new block files and republishes the directory and
    commit files that name them (:mod:`.copying`), "auto" punches where it
    can and copies otherwise. Returns what is left (live and dead bytes) and
    what was reclaimed.
    """
    if method not in METHODS:
        raise ConfigurationError(f"Invalid compaction method {method!r}: expected one of {', '.join(METHODS)}")
    directory_path = os.path.abspath(directory_path)
    with exclusive(directory_path, "compacted"):
        sources, n_commits, removed = _live_sources(directory_path, grace_seconds, remove=True)
        disk = _allocated(directory_path)
        waiting = retire(directory_path, sources, grace_seconds)  # of an earlier copying compaction
        live = _live_frames(directory_path, [load_tree(source) for source in sources])
        report = None
        if method != "copy":
            try:
                report = _survey(directory_path, live, punch=True)
            except PunchHoleUnsupportedError as e:
                if method == "punch":
                    raise
                logger.info("%s; copying live frames instead", e)
        if report is None:
            before = _survey(directory_path, live, punch=False)
            waiting = copy_compact(directory_path, sources, before.dead_by_file, grace_seconds)
            report = _survey(directory_path, _live_frames(directory_path, [load_tree(s) for s in sources]),
                             punch=False)
            report.reclaimed_bytes = max(disk - _allocated(directory_path), 0)  # whole files removed, if any
    report.commits_live, report.commits_removed, report.retired_waiting = n_commits, removed, waiting
    logger.info("%s: compacted: %d bytes reclaimed, %d live, %d dead left", directory_path,
                report.reclaimed_bytes, report.live_bytes, report.dead_bytes)
    return report
