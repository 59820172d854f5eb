"""The resume record of an HDF5 export: which plane ranges of a dataset are completely written.

The dataset's attributes record what is complete, so the record lives and dies
with the data (a deleted or replaced file cannot leave a stale marker behind):

* ``blockfs_source``: absolute path of the exported directory file.
* ``blockfs_planes_done``: an (n, 2) int64 array of disjoint, sorted plane
  ranges ``[z0, z1)`` that are completely written.

The writer (:class:`~blockfs_tasks.export.hdf5_writer.ChunkWriter`) removes a
range from the record before writing it and adds it back once it is written.
:func:`planes_complete` is what a Luigi task's ``complete()`` calls (it opens
the file read-only without locking, ~2 ms); it reads through a pending rollback
journal, so it sees the file as it was before an unfinished session.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np

from ..core.bytesource import is_remote
from ..core.optional import require
from .rollback import RolledBackView, pending_rollback

if TYPE_CHECKING:
    import h5py

logger = logging.getLogger(__name__)

__all__ = [
    "DONE_ATTR",
    "SOURCE_ATTR",
    "Intervals",
    "add_interval",
    "completed_planes",
    "planes_complete",
    "read_record",
    "remove_interval",
    "write_record",
]

DONE_ATTR = "blockfs_planes_done"
SOURCE_ATTR = "blockfs_source"

#: Disjoint, sorted plane ranges ``[z0, z1)``.
Intervals = list[tuple[int, int]]


def add_interval(intervals: Intervals, z0: int, z1: int) -> Intervals:
    """``intervals`` with ``[z0, z1)`` added, overlapping and touching ranges merged."""
    if z0 >= z1:
        return list(intervals)
    merged: Intervals = []
    for a, b in sorted([*intervals, (z0, z1)]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def remove_interval(intervals: Intervals, z0: int, z1: int) -> Intervals:
    """``intervals`` without the planes ``[z0, z1)``."""
    out: Intervals = []
    for a, b in intervals:
        if b <= z0 or a >= z1:
            out.append((a, b))
            continue
        if a < z0:
            out.append((a, z0))
        if b > z1:
            out.append((z1, b))
    return out


def read_record(dset: h5py.Dataset) -> tuple[str | None, Intervals]:
    """The source and the completed plane ranges recorded in ``dset``'s attributes."""
    source = dset.attrs.get(SOURCE_ATTR)
    if isinstance(source, bytes):
        source = source.decode()
    done = np.asarray(dset.attrs.get(DONE_ATTR, np.zeros((0, 2), np.int64))).reshape(-1, 2)
    return source, [(int(a), int(b)) for a, b in done]


def write_record(dset: h5py.Dataset, source: str, intervals: Intervals) -> None:
    """Record ``intervals`` of ``source`` as complete in ``dset``'s attributes."""
    dset.attrs[SOURCE_ATTR] = source
    dset.attrs[DONE_ATTR] = np.asarray(intervals, np.int64).reshape(-1, 2)


def completed_planes(
    dest: str | os.PathLike[str], name: str, src: str | os.PathLike[str] | None = None
) -> Intervals:
    """Plane ranges ``[z0, z1)`` recorded as completely exported in ``dest``/``name``.

    Empty when the file or dataset does not exist, when ``src`` is given and the
    record is of another source, or when the file cannot be read now (another
    process may be writing it: re-exporting a range is always safe).
    """
    dest = os.fspath(dest)
    if not os.path.isfile(dest):
        return []
    h5py = require("h5py", None, "HDF5 export")
    try:
        # A journal means a writer is at work or died: read the file as it was before that session.
        view = RolledBackView(dest) if pending_rollback(dest) else None
        with view or nullcontext(), h5py.File(view or dest, "r", locking=False) as f:
            dset = f.get(name)
            if not isinstance(dset, h5py.Dataset):
                return []
            source, done = read_record(dset)
    except OSError as e:
        logger.warning("%s: cannot read the export record (%s); treating nothing as complete", dest, e)
        return []
    if src is not None and source != (os.fspath(src) if is_remote(os.fspath(src)) else os.path.abspath(os.fspath(src))):
        return []  # (a remote volume is recorded by its URL)
    return done


def planes_complete(
    dest: str | os.PathLike[str], name: str, z0: int, z1: int, src: str | os.PathLike[str] | None = None
) -> bool:
    """True if planes ``[z0, z1)`` of ``src`` are recorded as exported to ``dest``/``name``."""
    return any(a <= z0 and z1 <= b for a, b in completed_planes(dest, name, src))
