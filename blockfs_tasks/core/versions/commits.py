"""Commit files: immutable directory files that share the volume's append-only block files.

A commit ``vol.blockfs.commit-<id>`` is a format 2.1.0 directory file whose
JSON metadata also holds a ``Commit`` record (parents, message, author,
time, blocks changed). It sits beside the volume, so its block file names
resolve as the volume's do, and opening it costs what opening the working
volume costs: it is a whole index, never a chain of changes.

The id is the SHA-256 (first 40 hex digits) of the volume's spec, the
parents, the message and the tree digest (SHA-256 of every entry's size and
CRC-32C), so a commit redone after a crash gets the same id, and moving
frames (compaction) never changes it. Author and time are kept but not
hashed. A commit of a volume unchanged since its base copies the base's
index with ``copy_file_range`` and reuses its digest: it never reads it.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import format as fmt
from ..atomic import published, write_all, write_atomically
from ..directory_file import header_with_table, read_metadata
from ..errors import FormatError, MissingFileError, RefError, TruncatedFileError
from ..naming import commit_file_name, commit_id_of
from ..spec import CRC, HEADER, PAGE_ENTRIES, VolumeSpec
from . import refs
from .trees import Tree, load_tree

ID_DIGITS = 40
MIN_PREFIX = 4


@dataclass(frozen=True)
class CommitInfo:
    """The commit record of a commit file."""

    id: str
    parents: tuple[str, ...]
    message: str
    author: str
    time: str  # ISO 8601, UTC
    changed: int  # blocks that differ from the first parent (all present blocks for a root commit)
    extra: dict[str, Any]  # the committer's own metadata (e.g. a pipeline run's parameters)
    tree: str  # tree_digest of the commit's index

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.id, "Parents": list(self.parents), "Message": self.message, "Author": self.author,
                "Time": self.time, "Changed": self.changed, "Extra": self.extra, "Tree": self.tree}


def tree_digest(tree: Tree) -> str:
    """SHA-256 (hex) of every entry's size, then every entry's CRC-32C (u32, position order)."""
    h = hashlib.sha256(np.ascontiguousarray(tree.index["size"]).tobytes())
    h.update(np.ascontiguousarray(tree.index["crc32c"]).tobytes())
    return h.hexdigest()


def commit_id(spec: fmt.VolumeSpec, parents: list[str], message: str, digest: str) -> str:
    """The content hash of a commit (see the module docstring); ``digest`` is :func:`tree_digest`."""
    h = hashlib.sha256(b"blockfs-commit-1\n")
    h.update(json.dumps({"spec": spec.to_dict(), "parents": parents, "message": message, "tree": digest},
                        sort_keys=True).encode())
    return h.hexdigest()[:ID_DIGITS]


def default_author() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_directory(path: str, tree: Tree, commit: CommitInfo | None = None) -> None:
    """Publish ``tree`` atomically as a 2.1.0 directory file at ``path``, with a commit record if given."""
    md = tree.spec.to_dict()
    md["BlockFiles"] = fmt.check_names(path, list(tree.names), relative=True)
    md["IndexPageEntries"] = PAGE_ENTRIES
    if commit is not None:
        md["Commit"] = commit.to_dict()
    index = np.ascontiguousarray(tree.index)
    crcs = tree.page_crcs if tree.page_crcs is not None else fmt.page_checksums(index, PAGE_ENTRIES)
    write_atomically(path, [header_with_table(md, crcs), index.data])


def write_commit(directory_path: str, tree: Tree, commit: CommitInfo) -> str:
    """Publish the commit file unless it exists already (same id: same content); return its path."""
    path = commit_file_name(directory_path, commit.id)
    if not os.path.exists(path):
        write_directory(path, tree, commit)
    return path


def copy_commit(directory_path: str, source_id: str, commit: CommitInfo) -> str:
    """Publish commit ``commit`` whose tree is commit ``source_id``'s, copying its index as it is; return its path.

    The index bytes and page CRCs are copied unchanged (``copy_file_range``:
    in the kernel, no pass through Python), so a corrupt source stays
    detectably corrupt; nothing is recomputed.
    """
    path = commit_file_name(directory_path, commit.id)
    if os.path.exists(path):
        return path
    source = commit_file_name(directory_path, source_id)
    md = read_metadata(source)
    with open(source, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        md_size, index_offset = fmt.read_header(source, f.read(HEADER.size), fmt.MAGIC, "blockfs directory file")
        n_pages = -(-VolumeSpec.from_dict(md, source).grid.n_blocks // int(md["IndexPageEntries"]))
        f.seek(HEADER.size + md_size + CRC.size)
        table = np.frombuffer(fmt.read_exactly(f, 4 * n_pages, source, "page table"), "<u4")
        md["Commit"] = commit.to_dict()
        head = header_with_table(md, table)
        with published(path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, head)
                at, end = index_offset, size
                while at < end:
                    n = os.copy_file_range(f.fileno(), fd, end - at, at, len(head) + at - index_offset)
                    if n == 0:
                        raise TruncatedFileError(f"{source} shrank while it was copied")
                    at += n
            finally:
                os.close(fd)
    return path


def read_commit(directory_path: str, commit_id: str) -> CommitInfo:
    """The commit record of commit ``commit_id`` (its header only)."""
    path = commit_file_name(directory_path, commit_id)
    try:
        md = read_metadata(path)
    except MissingFileError as e:
        raise MissingFileError(f"{path}: commit {commit_id} is missing") from e
    record = md.get("Commit")
    if not isinstance(record, dict):
        raise FormatError(f"{path}: a directory file without a commit record")
    try:
        return CommitInfo(str(record["Id"]), tuple(record["Parents"]), str(record["Message"]),
                          str(record["Author"]), str(record["Time"]), int(record["Changed"]),
                          dict(record.get("Extra") or {}), str(record["Tree"]))
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"{path}: malformed commit record ({e})") from e


def load_commit_tree(directory_path: str, commit_id: str) -> Tree:
    """The tree of commit ``commit_id``."""
    path = commit_file_name(directory_path, commit_id)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: commit {commit_id} is missing")
    return load_tree(path)


def commit_ids(directory_path: str) -> list[str]:
    """Ids of every commit file of the volume."""
    folder = os.path.dirname(directory_path) or "."
    ids = (commit_id_of(directory_path, name) for name in os.listdir(folder))
    return sorted(i for i in ids if i is not None)


def resolve(directory_path: str, ref: str) -> str:
    """The commit id a ref names: a tag, a branch, ``HEAD``, or a unique prefix (>= 4 digits) of an id."""
    if ref == "HEAD":
        base = refs.read_head(directory_path).base
        if base is None:
            raise RefError(f"{directory_path}: HEAD names no commit yet (nothing was committed)")
        return base
    for kind in (refs.TAGS, refs.HEADS):
        try:
            value = refs.read_ref(directory_path, kind, refs.check_ref_name(ref))
        except RefError:
            break
        if value.commit is not None:
            return value.commit
    if len(ref) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in ref):
        matches = [i for i in commit_ids(directory_path) if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RefError(f"{directory_path}: commit id prefix {ref!r} is ambiguous ({len(matches)} commits)")
    raise RefError(f"{directory_path}: no tag, branch or commit named {ref!r}")


def history(directory_path: str, commit_id: str | None, limit: int | None = None) -> list[CommitInfo]:
    """Commits from ``commit_id`` back along first parents, newest first."""
    out: list[CommitInfo] = []
    while commit_id is not None and (limit is None or len(out) < limit):
        info = read_commit(directory_path, commit_id)
        out.append(info)
        commit_id = info.parents[0] if info.parents else None
    return out


def reachable(directory_path: str) -> set[str]:
    """Every commit reachable from a branch, a tag or the working volume's base (all parents followed)."""
    starts = list(refs.list_refs(directory_path, refs.HEADS).values())
    starts += list(refs.list_refs(directory_path, refs.TAGS).values())
    base = refs.read_head(directory_path).base
    if base is not None:
        starts.append(base)
    seen: set[str] = set()
    while starts:
        cid = starts.pop()
        if cid in seen:
            continue
        seen.add(cid)
        starts.extend(read_commit(directory_path, cid).parents)
    return seen
