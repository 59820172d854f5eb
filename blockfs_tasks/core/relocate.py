"""Moving, copying and rebasing volumes (blockfs-mv, blockfs-cp, blockfs-rebase).

Format 2 names block files relative to the directory file, so a plain ``mv``
of the folder keeps a volume valid; these functions move a volume out of a
shared folder. Format 1.0.0 stores absolute block paths, which these functions
rewrite, as the original tools did.

Crash safety: nothing points at bytes that are not on disk, and at every moment
at least one of source and destination is a complete volume.

1. Each block file is hard-linked into the destination (``mv`` on one
   filesystem) or copied under a temporary name, fsynced and renamed; then
   fsynced, and the destination folder is fsynced.
2. The destination's directory file is written under a temporary name,
   checked (it must decode to the source's index, at the length its header
   says), fsynced and renamed into place: from here the destination is a
   volume.
3. ``mv`` only: the source's block files are unlinked, then its directory file.

Rerunning the same command after a crash finishes the job: block files
already at the destination with the same bytes are kept, a published
destination that holds the same volume as the source is taken as done, and
the dead process's temporary files are swept.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from .atomic import fsync_folder, fsync_path, sweep_temporaries, temporary_name
from .checks import check_positive
from .errors import (
    ConfigurationError,
    FormatError,
    MissingFileError,
    VolumeExistsError,
)
from .format import VERSION_1, DirectoryContents, read_directory, rewrite_metadata
from .journal import refuse_if_being_written
from .naming import resolve_block_path

logger = logging.getLogger(__name__)

#: errnos of ``link()`` that mean "this filesystem (pair) cannot hard-link": copy instead.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_COMPARE_CHUNK = 1 << 20
_INDEX_OFFSET = struct.Struct("<12xI")  # u32 offset of the index, at byte 12 of every version's header


def _names_key(md: dict[str, Any]) -> str:
    return "BlockFilenames" if md.get("Version") == VERSION_1 else "BlockFiles"


def copy_volume(src: str, dest_folder: str, move: bool = False) -> str:
    """Copy (or move) a volume into ``dest_folder``; return the new directory file's path.

    ``dest_folder`` is created if missing (its parent must exist). A
    destination that holds another volume of the same name is an error, never
    silently replaced; one that holds this very volume (an earlier run that was
    interrupted, or finished) is completed. See the module docstring for the
    order of operations.
    """
    src = os.path.abspath(src)
    dest_folder = os.path.abspath(dest_folder)
    dest = os.path.join(dest_folder, os.path.basename(src))
    if os.path.dirname(src) == dest_folder:
        raise ConfigurationError(f"{src} is already in {dest_folder}; choose another destination folder")
    if os.path.isdir(dest_folder):
        sweep_temporaries(dest)
    if move and not os.path.exists(src) and os.path.exists(dest):
        _check_complete(dest)
        logger.warning("%s is gone and %s is a complete volume: the move is already done", src, dest)
        return dest
    refuse_if_being_written(src, "Nothing was copied")
    contents = read_directory(src)
    sources = [resolve_block_path(src, n) for n in contents.block_files]
    targets = [os.path.join(dest_folder, os.path.basename(p)) for p in sources]
    if os.path.exists(dest):
        _check_same_volume(src, contents, sources, dest, targets)
        for target in targets:
            fsync_path(target)  # cheap when already on disk; an earlier run may have died before its folder fsync
        fsync_folder(dest)
        logger.info("%s already holds %s", dest, src)
    else:
        for path in sources:
            if not os.path.exists(path):
                raise MissingFileError(f"{path}: block file of {src} is missing; nothing was copied")
        if not os.path.isdir(dest_folder):
            os.mkdir(dest_folder)
        for source, target in zip(sources, targets, strict=True):
            sweep_temporaries(target)
            _place(source, target, link=move)
        fsync_folder(dest)

        def renamed(md: dict[str, Any]) -> dict[str, Any]:
            key = _names_key(md)
            md[key] = targets if md.get("Version") == VERSION_1 else [os.path.basename(t) for t in targets]
            return md

        publish_rewritten(src, dest, renamed, contents, must_not_exist=True)
    if move:
        _remove_source(src, sources, targets)
    logger.info("%s %s -> %s", "moved" if move else "copied", src, dest)
    return dest


def rebase_volume(path: str, chunk_size: int = 4096 * 16) -> None:
    """Point a volume's directory at the block files beside it, after a move by hand.

    Format 1.0.0 gets absolute paths in the directory file's folder (as the
    original ``blockfs-rebase`` wrote); format 2 gets plain relative names.
    ``chunk_size`` is the number of bytes per read while copying the index.
    """
    chunk_size = check_positive(chunk_size, "the number of bytes per read")
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    sweep_temporaries(path)
    contents = read_directory(path)
    for name in contents.block_files:
        beside = os.path.join(folder, os.path.basename(name))
        if not os.path.exists(beside):
            raise MissingFileError(f"{beside}: block file not found beside {path}; nothing was changed")

    def rebased(md: dict[str, Any]) -> dict[str, Any]:
        key = _names_key(md)
        names = [os.path.basename(n) for n in md[key]]
        md[key] = [os.path.join(folder, n) for n in names] if md.get("Version") == VERSION_1 else names
        return md

    publish_rewritten(path, path, rebased, contents, chunk_size=chunk_size)


def publish_rewritten(
    src: str,
    dest: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
    contents: DirectoryContents,
    chunk_size: int = 1 << 20,
    must_not_exist: bool = False,
) -> None:
    """Publish ``src`` with its metadata passed through ``update`` at ``dest``, after checking the result.

    The rewritten file is made under a temporary name (fsynced) and renamed
    into place only if it decodes to the same index as ``contents`` (the
    source as read) and is exactly as long as its header and the source's
    index say; otherwise it is removed and :class:`FormatError` is raised,
    ``dest`` untouched.
    """
    tmp = temporary_name(dest)
    try:
        rewrite_metadata(src, tmp, update, chunk_size)
        _check_rewritten(src, tmp, contents)
        if must_not_exist and os.path.exists(dest):
            raise VolumeExistsError(f"{dest} appeared while the volume was being copied; nothing was replaced")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(dest)


def _index_offset(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(_INDEX_OFFSET.size)
    if len(head) < _INDEX_OFFSET.size:
        raise FormatError(f"{path}: {len(head)} bytes is too short for a blockfs directory header")
    return int(_INDEX_OFFSET.unpack(head)[0])


def _check_rewritten(src: str, tmp: str, contents: DirectoryContents) -> None:
    """Raise unless ``tmp`` holds ``src``'s whole index, at the right length."""
    index_bytes = os.path.getsize(src) - _index_offset(src)
    expected = _index_offset(tmp) + index_bytes
    got = os.path.getsize(tmp)
    if got != expected:
        raise FormatError(
            f"{src}: the rewritten directory is {got} bytes, expected {expected}; nothing was changed"
        )
    rewritten = read_directory(tmp)
    if rewritten.version != contents.version or not np.array_equal(rewritten.index, contents.index):
        raise FormatError(f"{src}: the rewritten directory's index differs from the original; nothing was changed")


def _same_bytes(a: str, b: str) -> bool:
    """True when files ``a`` and ``b`` hold the same bytes (or are the same file)."""
    if os.path.samefile(a, b):
        return True
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(_COMPARE_CHUNK)
            if chunk != fb.read(_COMPARE_CHUNK):
                return False
            if not chunk:
                return True


def _place(source: str, target: str, link: bool) -> None:
    """Put ``source``'s bytes at ``target`` durably: hard link (when ``link``) or copy + fsync + rename.

    A ``target`` that already holds the same bytes (an interrupted earlier run)
    is kept; one that holds other bytes is an error.
    """
    if os.path.exists(target):
        if not _same_bytes(source, target):
            raise VolumeExistsError(
                f"{target} already exists and differs from {source}; remove it or choose another destination"
            )
        logger.info("%s is already in place", target)
    elif not (link and _try_link(source, target)):
        tmp = temporary_name(target)
        try:
            shutil.copyfile(source, tmp)
            fsync_path(tmp)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    fsync_path(target)


def _try_link(source: str, target: str) -> bool:
    """Hard-link ``source`` as ``target``; False when the filesystem cannot (then copy)."""
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno in _NO_LINK:
            return False
        raise
    return True


def _check_complete(dest: str) -> None:
    """Raise unless ``dest`` is a directory file whose block files all exist."""
    contents = read_directory(dest)
    for name in contents.block_files:
        path = resolve_block_path(dest, name)
        if not os.path.exists(path):
            raise MissingFileError(f"{path}: block file of {dest} is missing")


def _check_same_volume(
    src: str, contents: DirectoryContents, sources: list[str], dest: str, targets: list[str]
) -> None:
    """Raise :class:`VolumeExistsError` unless the published ``dest`` is ``src``'s volume, complete."""
    other = read_directory(dest)
    same = (
        other.version == contents.version
        and other.spec.same_volume(contents.spec)
        and other.spec.metadata == contents.spec.metadata
        and [os.path.basename(n) for n in other.block_files] == [os.path.basename(t) for t in targets]
        and np.array_equal(other.index, contents.index)
    )
    if not same:
        raise VolumeExistsError(
            f"{dest} already exists and holds another volume; remove it or choose another destination"
        )
    for source, target in zip(sources, targets, strict=True):
        if not os.path.exists(target):
            raise VolumeExistsError(f"{dest} already exists but its block file {target} is missing; remove it")
        if os.path.exists(source) and not _same_bytes(source, target):
            raise VolumeExistsError(f"{dest} already exists but {target} differs from {source}; remove it")


def _remove_source(src: str, sources: list[str], targets: list[str]) -> None:
    """Unlink the source's block files, then its directory file (the destination is published)."""
    folders = set()
    for source, target in zip(sources, targets, strict=True):
        if os.path.abspath(source) == target:
            continue  # a format 1.0.0 block file that already lived in the destination folder
        try:
            os.unlink(source)
        except FileNotFoundError:
            pass
        folders.add(os.path.dirname(source))
    for folder in sorted(folders):
        fsync_folder(os.path.join(folder, "x"))
    os.unlink(src)
    fsync_folder(src)
