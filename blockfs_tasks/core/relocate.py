"""Moving, copying and rebasing volumes (blockfs-mv, blockfs-cp, blockfs-rebase).

Format 2.0.0 names block files relative to the directory file, so a plain
``mv`` of the folder keeps a volume valid; these functions move a volume out
of a shared folder. Format 1.0.0 stores absolute block paths, which these
functions rewrite, as the original tools did. Block files are placed first and
the directory file last, so an interrupted copy never looks like a volume.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from .atomic import fsync_folder
from .blockfile import journal_name
from .directory import resolve_block_path
from .errors import MissingFileError, VolumeBusyError, VolumeExistsError
from .format import VERSION_1, read_directory, rewrite_metadata

logger = logging.getLogger(__name__)


def _names_key(md: dict[str, Any]) -> str:
    return "BlockFilenames" if md.get("Version") == VERSION_1 else "BlockFiles"


def copy_volume(src: str, dest_folder: str, move: bool = False) -> str:
    """Copy (or move) a volume into ``dest_folder``; return the new directory file's path.

    ``dest_folder`` is created if missing (its parent must exist). An existing
    volume of the same name there is an error, never silently replaced.
    """
    src = os.path.abspath(src)
    journal = journal_name(src)
    if os.path.exists(journal):
        raise VolumeBusyError(
            f"{journal}: the volume has blocks not yet merged into its directory (it is being written, "
            f"or its writer never closed it); after writing ends, Directory.open({src!r}, 'r+').close() "
            f"merges them. Nothing was copied"
        )
    contents = read_directory(src)
    sources = [resolve_block_path(src, n) for n in contents.block_files]
    for path in sources:
        if not os.path.exists(path):
            raise MissingFileError(f"{path}: block file of {src} is missing; nothing was copied")
    if not os.path.isdir(dest_folder):
        os.mkdir(dest_folder)
    dest = os.path.join(os.path.abspath(dest_folder), os.path.basename(src))
    targets = [os.path.join(os.path.dirname(dest), os.path.basename(p)) for p in sources]
    for path in [dest, *targets]:
        if os.path.exists(path):
            raise VolumeExistsError(f"{path} already exists; remove it or choose another destination")
    for source, target in zip(sources, targets):
        if move:
            shutil.move(source, target)
        else:
            shutil.copyfile(source, target)
    fsync_folder(dest)

    def renamed(md: dict[str, Any]) -> dict[str, Any]:
        key = _names_key(md)
        md[key] = targets if md.get("Version") == VERSION_1 else [os.path.basename(t) for t in targets]
        return md

    rewrite_metadata(src, dest, renamed)
    if move:
        os.unlink(src)
    logger.info("%s %s -> %s", "moved" if move else "copied", src, dest)
    return dest


def rebase_volume(path: str, chunk_size: int = 4096 * 16) -> None:
    """Point a volume's directory at the block files beside it, after a move by hand.

    Format 1.0.0 gets absolute paths in the directory file's folder (as the
    original ``blockfs-rebase`` wrote); format 2.0.0 gets plain relative names.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
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

    rewrite_metadata(path, path, rebased, chunk_size)
