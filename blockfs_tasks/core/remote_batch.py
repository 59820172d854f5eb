"""Batches written to an object store: staged locally, then uploaded block file first, fragment after.

A batch of the remote volume ``s3://bucket/path/vol.blockfs`` is written by
:class:`~.batch.BatchWriter` into a local staging folder (one per volume URL,
see :func:`staging_path`), then uploaded: its block file ``vol.blockfs.<k>``
(multipart when large), then its fragment ``vol.blockfs.<k>.fragment``. An
object store shows an object only once its upload completed, so an existing
fragment object means the batch's block object is whole: the fragment is the
batch's checkpoint, as on a filesystem. :func:`build_remote_directory` merges
the fragment objects and writes the directory object last.

Every object has the bytes and the name of the file a local run writes, so a
remote volume is the local volume, uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import format as fmt
from .batch import fragment_matches
from .bytesource import is_remote
from .errors import FormatError, MissingFileError, TruncatedFileError
from .fragment import fragment_batch, parse_fragment
from .merge import IndexMerger
from .naming import block_file_name, fragment_name
from .objects import ObjectStore, file_crc32c

logger = logging.getLogger(__name__)

#: Environment variable naming the local folder where batches of remote volumes are staged.
STAGING_ENV = "BLOCKFS_STAGING"


def staging_path(url: str, root: str | None = None) -> str:
    """The local directory-file path under which batches of the remote volume ``url`` are staged.

    ``root`` (default ``$BLOCKFS_STAGING``, else the system's temporary
    folder + ``blockfs-staging``) holds one folder per volume URL.
    """
    if not is_remote(url):
        raise ValueError(f"{url} is not a URL")
    root = root or os.environ.get(STAGING_ENV) or os.path.join(tempfile.gettempdir(), "blockfs-staging")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return os.path.join(os.path.abspath(root), digest, url.rstrip("/").rsplit("/", 1)[1])


def publish_batch(staged: str, url: str, number: int, store: ObjectStore) -> None:
    """Upload staged batch ``number`` (block file, then fragment), then remove its staged files."""
    block, fragment = block_file_name(staged, number), fragment_name(staged, number)
    store.put(block, block_file_name(url, number), file_crc32c(block))
    store.put(fragment, fragment_name(url, number))
    for path in (block, fragment):
        os.unlink(path)
    logger.debug("%s: batch %d uploaded", url, number)


def remote_batch_complete(
    url: str, number: int, store: ObjectStore, spec: fmt.VolumeSpec | None = None, batch: dict[str, Any] | None = None
) -> bool:
    """True when batch ``number``'s fragment object exists (for ``spec`` and ``batch`` when given)."""
    name = fragment_name(url, number)
    if not store.exists(name):
        return False
    return spec is None or fragment_matches(lambda: fragment_batch(name, store.cat(name)), spec, batch)


def build_remote_directory(
    url: str,
    spec: fmt.VolumeSpec,
    numbers: Sequence[int],
    store: ObjectStore,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Merge the fragment objects of batches ``numbers`` and write the directory object last; return blocks indexed.

    Each fragment must be of ``spec`` and its block object must be long
    enough for every frame it lists; otherwise an error names the object and
    no directory is written. The directory's bytes are those
    :func:`~.batch.build_directory` writes for the same batches.
    """
    merger = IndexMerger(url, np.zeros(spec.grid.n_blocks, fmt.INDEX_DTYPE), [])
    for number in numbers:
        name = fragment_name(url, number)
        if not store.exists(name):
            raise MissingFileError(f"{name}: no such fragment object")
        fragment = parse_fragment(name, store.cat(name), strict=True)
        if not fragment.spec.same_volume(spec):
            raise FormatError(f"{name}: fragment was written for another volume, expected {spec.to_dict()}")
        if merger.apply(fragment.entries, name, expected_file=number):
            entries = fmt.newest_entries(fragment.entries)
            end = int((entries["offset"] + entries["size"]).max())
            block = block_file_name(url, number)
            info = store.info(block)
            if info is None:
                raise MissingFileError(f"{block}: block object of a committed fragment is missing")
            if int(info["size"]) < end:
                raise TruncatedFileError(
                    f"{block}: block object is truncated: {info['size']} bytes, its fragment needs {end}"
                )
        if progress is not None:
            progress(1)
    merger.drop_unused_names()
    index = merger.index
    store.put_bytes(fmt.encode_directory_header(spec, merger.block_names, index) + index.tobytes(), url)
    return int(np.count_nonzero(index["file"]))
