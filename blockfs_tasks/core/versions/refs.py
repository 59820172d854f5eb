"""Branches and tags: named pointers at commits, moved by an atomic compare-and-swap.

A ref is a folder (``vol.blockfs.refs/heads/<name>`` or ``.../tags/<name>``)
of generation files ``000000000000``, ``000000000001``...; the newest
generation is the ref's value: ``{"commit": "<id>"}``, or
``{"deleted": true}`` for a deleted ref. Moving a ref from generation ``g``
writes the new value to a temporary file, fsyncs it and ``link()``-s it to
generation ``g + 1``: the link fails with EEXIST if another process moved
the ref first, on local filesystems and NFS alike, so two movers can never
both win and nothing is ever half-written. Generations are never removed
(removing one would let a slow mover reuse its number); they are the ref's
log and cost one small file per move.

The working volume's state, ``vol.blockfs.HEAD`` (``{"branch": name or
null, "base": id or null, "working": [inode, size, mtime ns] or null}``),
says which branch is checked out, which commit the working directory file
was last in step with, and which file that was (a republished directory is
a new file: while it is the same one, the working volume equals its base and
a commit need not read it); it is replaced atomically (it is this volume's
alone, written under its writing session).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ..atomic import fsync_folder, temporary_name, write_all, write_atomically
from ..errors import FormatError, RefError
from ..naming import head_state_name, ref_folder, ref_generation_name, refs_folder

HEADS = "heads"
TAGS = "tags"
KINDS = (HEADS, TAGS)
DEFAULT_BRANCH = "main"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_ref_name(name: str) -> str:
    """Raise unless ``name`` can name a branch or tag (letters, digits, '.', '_', '-'; not ending '.lock')."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".lock"):
        raise RefError(
            f"Invalid branch or tag name {name!r:.60}: expected letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class RefValue:
    """A ref as read: its newest generation (-1: never existed) and commit (None: never set or deleted)."""

    generation: int
    commit: str | None


def read_ref(directory_path: str, kind: str, name: str) -> RefValue:
    """The current value of a ref."""
    folder = ref_folder(directory_path, kind, name)
    try:
        generations = [int(g) for g in os.listdir(folder) if g.isdigit()]
    except FileNotFoundError:
        return RefValue(-1, None)
    if not generations:
        return RefValue(-1, None)
    newest = max(generations)
    path = ref_generation_name(directory_path, kind, name, newest)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        value = json.loads(raw)
        commit = value.get("commit")
    except (ValueError, AttributeError) as e:
        raise FormatError(f"{path}: not a ref file ({raw[:40]!r})") from e
    return RefValue(newest, commit if isinstance(commit, str) else None)


def move_ref(directory_path: str, kind: str, name: str, expected: RefValue, commit: str | None) -> bool:
    """Set a ref to ``commit`` (None deletes it) if it is still at ``expected``; False if someone moved it first."""
    check_ref_name(name)
    path = ref_generation_name(directory_path, kind, name, expected.generation + 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, json.dumps({"commit": commit} if commit else {"deleted": True}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    fsync_folder(path)
    return True


def list_refs(directory_path: str, kind: str, deleted: bool = False) -> dict[str, str]:
    """Every ref of ``kind`` that points at a commit (with ``deleted``, deleted ones too, as ""): name -> id."""
    folder = os.path.join(refs_folder(directory_path), kind)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        if _NAME.fullmatch(name):
            value = read_ref(directory_path, kind, name)
            if value.commit is not None or deleted:
                out[name] = value.commit or ""
    return out


@dataclass(frozen=True)
class HeadState:
    """What the working volume has checked out: a branch (None: a bare commit) and its base commit."""

    branch: str | None
    base: str | None
    working: list[int] | None = None  # the working file's (inode, size, mtime ns) when it last equalled base


def working_identity(directory_path: str) -> list[int]:
    """(inode, size, mtime ns) of the working directory file: it changes whenever the file is republished."""
    st = os.stat(directory_path)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def read_head(directory_path: str) -> HeadState:
    """The working volume's state; a volume never committed is on branch ``main`` with no base."""
    path = head_state_name(directory_path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return HeadState(DEFAULT_BRANCH, None)
    try:
        value = json.loads(raw)
        return HeadState(value.get("branch"), value.get("base"), value.get("working"))
    except (ValueError, AttributeError) as e:
        raise FormatError(f"{path}: not a HEAD file ({raw[:40]!r})") from e


def write_head(directory_path: str, state: HeadState) -> None:
    """Replace the working volume's state atomically."""
    data = json.dumps({"branch": state.branch, "base": state.base, "working": state.working}).encode()
    write_atomically(head_state_name(directory_path), [data])
