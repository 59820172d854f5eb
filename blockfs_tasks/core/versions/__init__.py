"""Versions of a volume: commits, branches and tags; diff; deletes; compaction.

See :mod:`.commits` (commit files), :mod:`.refs` (branches and tags moved by
a ``link()`` compare-and-swap), :mod:`.ops` (commit, checkout, diff),
:mod:`.erase` (deleting a region) and :mod:`.space` (live/dead bytes,
compaction). Files are named in :mod:`..naming`; the format in :mod:`..format`.
"""

from __future__ import annotations

from .commits import CommitInfo, history, reachable, read_commit, resolve
from .erase import delete_region
from .ops import (
    checkout,
    commit_batches,
    commit_tree,
    commit_working,
    create_ref,
    delete_ref,
    diff,
    version_path,
)
from .refs import DEFAULT_BRANCH, HEADS, TAGS, HeadState, list_refs, read_head, read_ref
from .space import SpaceReport, compact, space_usage

__all__ = [
    "DEFAULT_BRANCH",
    "HEADS",
    "TAGS",
    "CommitInfo",
    "HeadState",
    "SpaceReport",
    "checkout",
    "commit_batches",
    "commit_tree",
    "commit_working",
    "compact",
    "create_ref",
    "delete_ref",
    "delete_region",
    "diff",
    "history",
    "list_refs",
    "read_commit",
    "read_head",
    "read_ref",
    "reachable",
    "resolve",
    "space_usage",
    "version_path",
]
