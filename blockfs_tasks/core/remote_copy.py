"""Copying a volume to or from an object store (``blockfs-cp vol.blockfs s3://bucket/path/``, and back).

The block files are copied first, several at once (a large one in parts, by
the fsspec filesystem), the directory file last: a destination never shows
a directory whose blocks are not all there. An object appears only once its
upload completed and a downloaded file is renamed into place only once
whole, so nothing half-copied looks complete. A rerun skips every file whose
destination already has the same size and CRC-32C (kept in each uploaded
object's metadata), so an interrupted copy resumes where it stopped.

Names: the volume keeps its file names; ``dest`` is the folder (or bucket
prefix) to copy into.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import format as fmt
from .atomic import sweep_temporaries
from .bytesource import is_remote, join_url, local_path
from .errors import ConfigurationError, MissingFileError, VolumeExistsError
from .journal import refuse_if_being_written
from .naming import resolve_block_path
from .objects import ObjectStore, file_crc32c

logger = logging.getLogger(__name__)

#: Files copied at once.
COPY_THREADS = 8

Progress = Callable[[int], None]  # bytes copied (or found already copied) since the last call


def copy_remote(
    src: str,
    dest: str,
    storage_options: dict[str, Any] | None = None,
    n_threads: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> str:
    """Copy the volume ``src`` into the folder or prefix ``dest``, one of them a URL; return the new directory's name.

    ``storage_options`` go to fsspec for the remote side, as they are. An
    upload may rename the directory object (``name``; block objects keep
    their names, which the directory holds).
    """
    if is_remote(src) == is_remote(dest):
        raise ConfigurationError(f"copy {src} -> {dest}: exactly one of them must be a URL (s3://, gs://...)")
    if is_remote(dest):
        return _upload(
            os.path.abspath(local_path(src)), dest, storage_options, n_threads or COPY_THREADS, progress, name
        )
    return _download(src, os.path.abspath(local_path(dest)), storage_options, n_threads or COPY_THREADS, progress)


def _upload(
    src: str, folder: str, options: dict[str, Any] | None, n_threads: int, progress: Progress | None,
    name: str | None = None,
) -> str:
    refuse_if_being_written(src, "Nothing was copied")
    contents = fmt.read_directory(src)
    dest = f"{folder.rstrip('/')}/{name or os.path.basename(src)}"
    store = ObjectStore.for_url(dest, options)
    sources = [resolve_block_path(src, name) for name in contents.block_files]
    for path in sources:
        if not os.path.exists(path):
            raise MissingFileError(f"{path}: block file of {src} is missing; nothing was copied")
    directory_crc, directory_size = file_crc32c(src), os.path.getsize(src)
    info = store.info(dest)
    if info is not None and not store.holds(dest, directory_size, directory_crc):
        raise VolumeExistsError(
            f"{dest} holds another volume (or another version of this one); remove its objects first"
        )

    def upload(path: str, target: str | None = None) -> None:
        target = target or join_url(dest, os.path.basename(path))
        size, crc = os.path.getsize(path), file_crc32c(path)
        if store.holds(target, size, crc):
            logger.info("%s: already holds %s", target, path)
        else:
            store.put(path, target, crc)
        if progress is not None:
            progress(size)

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(upload, sources))
    upload(src, dest)  # last: the volume exists at dest only once every block is there
    return dest


def _download(src: str, folder: str, options: dict[str, Any] | None, n_threads: int, progress: Progress | None) -> str:
    store = ObjectStore.for_url(src, options)
    contents = fmt.read_directory(src, source=store.source)
    dest = os.path.join(folder, src.rstrip("/").rsplit("/", 1)[1])
    os.makedirs(folder, exist_ok=True)
    sweep_temporaries(dest)
    names = [join_url(src, name) for name in contents.block_files]
    if os.path.exists(dest):
        info = store.info(src)
        if info is None or not _local_holds(store, src, info, dest):
            raise VolumeExistsError(f"{dest} holds another volume (or another version of this one); remove it first")

    def download(url: str, local: str) -> None:
        info = store.info(url)
        if info is None:
            raise MissingFileError(f"{url}: block object of {src} is missing")
        if os.path.exists(local) and _local_holds(store, url, info, local):
            logger.info("%s: already holds %s", local, url)
        else:
            sweep_temporaries(local)
            store.get(url, local)
        if progress is not None:
            progress(int(info["size"]))

    targets = [os.path.join(folder, url.rsplit("/", 1)[1]) for url in names]
    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(download, names, targets))
    if contents.version == fmt.VERSION_1:  # absolute block paths: point them at the copies, as blockfs-cp does
        staged = dest + ".download"
        download(src, staged)

        def renamed(md: dict[str, Any]) -> dict[str, Any]:
            md["BlockFilenames"] = targets
            return md

        fmt.rewrite_metadata(staged, dest, renamed)
        os.unlink(staged)
    else:
        download(src, dest)  # last
    return dest


def _local_holds(store: ObjectStore, url: str, info: dict[str, Any], local: str) -> bool:
    """True if the local file has the object's size and CRC-32C."""
    size = int(info.get("size", -1))
    return os.path.getsize(local) == size and store.stored_crc32c(url, info) == file_crc32c(local)
