"""The batch API: one batch of blocks = one block file + one fragment, published atomically.

This is what a Luigi task writes. Batch ``k`` of the volume ``vol.blockfs``
appends its blocks to a temporary block file, then publishes
``vol.blockfs.<k>`` and, last, the fragment ``vol.blockfs.<k>.fragment``
(fsynced before each rename). The fragment is the batch's checkpoint: it
exists only once every block it lists is durable. Running a batch again
overwrites its own two files and nothing else.

:func:`build_directory` merges the fragments into the directory file (the
index is filled by numpy, one fragment at a time, so memory stays about the
size of the index) and publishes it atomically.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import format as fmt
from .atomic import fsync_folder, temporary_name, write_all, write_atomically
from .codec import checksum
from .directory_file import read_directory
from .encode import encode_block
from .errors import FormatError, VolumeHasVersionsError
from .fragment import read_fragment_header
from .merge import IndexMerger, check_block_file_holds
from .naming import FRAGMENT_SUFFIX, block_file_name, block_file_number, fragment_name, version_files
from .parallel import bounded_map
from .writeback import Writeback

logger = logging.getLogger(__name__)

__all__ = ["BatchWriter", "batch_complete", "build_directory", "read_fragment_header", "remove_other_batches"]


class BatchWriter:
    """Writes batch ``number`` of a volume: its own block file and fragment.

    Use as a context manager: leaving it normally commits the batch, an
    exception discards it (the temporary files are removed).
    """

    def __init__(
        self, directory_path: str, spec: fmt.VolumeSpec, number: int, batch: dict[str, Any] | None = None
    ) -> None:
        self.directory_path = os.path.abspath(directory_path)
        self.spec = spec
        self.batch = batch
        self.number = int(number)
        self.block_path = block_file_name(self.directory_path, self.number)
        self._tmp = temporary_name(self.block_path)
        os.makedirs(os.path.dirname(self.directory_path), exist_ok=True)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._offset = 0
        self._entries: list[bytes] = []
        self._writeback = Writeback(self._fd)  # so commit()'s fsync finds the bytes mostly on disk

    def _encode(self, item: tuple[np.ndarray, int, int, int]) -> tuple[int, bytes]:
        block, x, y, z = item
        where = f"{self.directory_path}: batch {self.number}: block at (x, y, z) = ({x}, {y}, {z})"
        return encode_block(self.spec, block, x, y, z, where)

    def _append(self, position: int, data: bytes) -> None:
        write_all(self._fd, data)
        self._entries.append(fmt.encode_entry(position, self.number, self._offset, len(data), checksum(data)))
        self._offset += len(data)
        self._writeback.wrote(self._offset)

    def write_block(self, block: np.ndarray, x: int, y: int, z: int) -> None:
        """Add the (z, y, x) block whose first voxel is (x, y, z) to the batch."""
        self._append(*self._encode((block, x, y, z)))

    def write_blocks(self, items: Iterable[tuple[np.ndarray, int, int, int]], n_threads: int = 1) -> int:
        """Add ``(block, x, y, z)`` items, compressing on ``n_threads`` threads; return the count."""
        n = 0
        for position, data in bounded_map(self._encode, items, n_threads):
            self._append(position, data)
            n += 1
        return n

    def commit(self) -> None:
        """Publish the block file, then the fragment that makes the batch complete."""
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        if os.path.exists(self.block_path) and version_files(self.directory_path):
            self._keep_versions_block_file()
        os.replace(self._tmp, self.block_path)
        fsync_folder(self.block_path)
        write_atomically(
            fragment_name(self.directory_path, self.number),
            [fmt.encode_fragment_header(self.spec, self.batch), b"".join(self._entries)],
        )
        logger.debug("committed batch %d: %d blocks", self.number, len(self._entries))

    def _keep_versions_block_file(self) -> None:
        """Refuse to replace a block file that commits may use, unless this batch rewrote the same bytes.

        A rerun of a batch writes the same bytes (the work is deterministic),
        so replacing its block file is harmless; different bytes would break
        every commit that points into the old file.
        """
        if filecmp.cmp(self._tmp, self.block_path, shallow=False):
            return
        os.unlink(self._tmp)
        raise VolumeHasVersionsError(
            f"{self.directory_path} has versions, and batch {self.number} would replace its block file "
            f"{os.path.basename(self.block_path)} with other bytes (commits point into it). Write the new "
            f"volume at another path, or delete the volume's versions first"
        )

    def abort(self) -> None:
        """Discard the batch: nothing it wrote stays."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def batch_complete(
    directory_path: str,
    number: int,
    spec: fmt.VolumeSpec | None = None,
    batch: dict[str, Any] | None = None,
) -> bool:
    """True when batch ``number`` is committed, for ``spec`` and ``batch`` when given.

    Costs one small read, so a Luigi ``complete()`` stays cheap.
    """
    path = fragment_name(os.path.abspath(directory_path), number)
    if not os.path.exists(path):
        return False
    return spec is None or fragment_matches(lambda: read_fragment_header(path), spec, batch)


def fragment_matches(
    header: Callable[[], tuple[fmt.VolumeSpec, dict[str, Any] | None]],
    spec: fmt.VolumeSpec,
    batch: dict[str, Any] | None,
) -> bool:
    """True if the fragment whose ``header()`` gives (spec, "Batch") was written for ``spec`` and ``batch``.

    An unreadable header (``FormatError``, ``OSError``) is not a match.
    """
    try:
        got_spec, got_batch = header()
    except (FormatError, OSError):
        return False
    return got_spec.same_volume(spec) and (batch is None or got_batch == json.loads(json.dumps(batch)))


def build_directory(
    directory_path: str,
    spec: fmt.VolumeSpec,
    numbers: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Merge the fragments of batches ``numbers`` into the directory file; return blocks indexed.

    Each fragment must have been written for ``spec`` and its block file must
    hold every byte the fragment lists; otherwise a clear error names the file
    and the directory is left as it was. For a position written by several
    batches, the later batch in ``numbers`` wins.
    """
    directory_path = os.path.abspath(directory_path)
    merger = IndexMerger(directory_path, np.zeros(spec.grid.n_blocks, fmt.INDEX_DTYPE), [])
    for number in numbers:
        path = fragment_name(directory_path, number)
        fragment = fmt.read_fragment(path, strict=True)
        if not fragment.spec.same_volume(spec):
            raise FormatError(
                f"{path}: fragment was written for another volume "
                f"({fragment.spec.to_dict()}), expected {spec.to_dict()}"
            )
        if merger.apply(fragment.entries, path, expected_file=number):
            check_block_file_holds(block_file_name(directory_path, number), fmt.newest_entries(fragment.entries))
        if progress is not None:
            progress(1)
    merger.drop_unused_names()  # batches entirely superseded by later ones
    index = merger.index
    write_atomically(directory_path, [fmt.encode_directory_header(spec, merger.block_names, index), index.data])
    return int(np.count_nonzero(index["file"]))


def remove_other_batches(directory_path: str, numbers: Iterable[int]) -> list[int]:
    """Remove the committed batches beside a built volume that are not among ``numbers``; return theirs.

    Call it once the directory file built from batches ``numbers`` is
    published: a batch committed under another plan (a run stopped before a
    default changed how the volume is cut, a smaller rerun) is then named by
    no directory. Its fragment goes first (the checkpoint), then its block
    file. Left alone: block files without a fragment (a live writer's, which
    has a journal), anything the published directory names, and every file
    of a volume with versions (commits may name any block file).
    """
    directory_path = os.path.abspath(directory_path)
    if version_files(directory_path):
        return []
    keep = {int(n) for n in numbers}
    named = set(read_directory(directory_path).block_files)
    folder, base = os.path.split(directory_path)
    removed = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(FRAGMENT_SUFFIX):
            continue
        block = os.path.join(folder, name[: -len(FRAGMENT_SUFFIX)])
        number = block_file_number(directory_path, block)
        if number is None or number in keep or os.path.basename(block) in named:
            continue
        os.unlink(os.path.join(folder, name))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(block)
        removed.append(number)
    if removed:
        fsync_folder(folder)
        logger.info("%s: removed %d batches of another plan (%s)", base, len(removed), removed)
    return removed
