"""Journals: the per-writer commit log of a live volume's block file.

Block file ``k``'s live writer, and no other process, writes the journal
``<directory file>.<k>.journal`` (see :mod:`.naming`): a fragment header,
then one 32-byte entry per committed block, written after the block's bytes
at an offset the writer tracks itself (``pwrite``). Nothing depends on
appends being atomic across processes or hosts. A journal may end in a torn
entry (a writer killed mid-append); reading drops it.

:class:`Journal` is the writing side; :func:`journal_files`,
:func:`read_journal`, :class:`JournalReplay` and :func:`remove_journals` the
reading side (a session's reads, and its ``close()``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .atomic import fsync_folder, pwrite_all, temporary_name
from .errors import VolumeBusyError
from .fragment import Fragment, read_fragment
from .naming import block_file_number, fragment_name, journal_name, journal_number, legacy_journal_name, volume_files
from .spec import VolumeSpec

logger = logging.getLogger(__name__)


class Journal:
    """An open journal of one block file: appends entries at its own tracked end.

    Made by :meth:`create`; only the process that created it writes to it.
    """

    def __init__(self, path: str, fd: int, end: int) -> None:
        self.path = path
        self._fd = fd
        self.end = end  # end of the last committed entry

    @classmethod
    def create(cls, directory_path: str, number: int, header: bytes) -> Journal:
        """Create the journal of block file ``number`` holding ``header``, whole or not at all.

        Written under a temporary name and ``link()``-ed into place, so it
        never exists half-written; raises :class:`FileExistsError` if the
        journal exists already.
        """
        path = journal_name(directory_path, number)
        tmp = temporary_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pwrite_all(fd, header, 0)
            os.link(tmp, path)
        finally:
            os.close(fd)
            os.unlink(tmp)
        return cls(path, os.open(path, os.O_WRONLY), len(header))  # by its own name, so lsof/strace name it

    def append(self, entry: bytes) -> None:
        """Write one entry at the committed end; the end moves only once every byte is written."""
        pwrite_all(self._fd, entry, self.end)
        self.end += len(entry)

    def truncate(self) -> None:
        """Cut the journal back to its committed end (undo of a failed append)."""
        os.ftruncate(self._fd, self.end)

    def close(self) -> None:
        """Close the journal's file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def journal_files(directory_path: str) -> list[str]:
    """Every journal of the volume that exists now, oldest first.

    Block file numbers only grow within a volume (a writer claims the first
    free one), so sorting by number puts an earlier session's journals before
    a later one's: replayed in this order, the newest entry of a position wins.
    """
    folder = os.path.dirname(directory_path)
    numbered = []
    for name in os.listdir(folder or "."):  # listdir + string tests: this runs before every read of a session
        number = journal_number(directory_path, name)
        if number is not None:
            numbered.append((number, os.path.join(folder, name)))
    legacy = legacy_journal_name(directory_path)
    return ([legacy] if os.path.exists(legacy) else []) + [p for _, p in sorted(numbered)]


def read_journal(path: str, spec: VolumeSpec) -> Fragment | None:
    """A journal's valid entries (a torn tail dropped); None if it is gone or was written for another volume."""
    try:
        fragment = read_fragment(path, strict=False)
    except FileNotFoundError:
        return None
    if not fragment.spec.same_volume(spec):
        logger.warning("%s: ignoring a journal written for another volume", path)
        return None
    return fragment


class JournalReplay:
    """Follows a volume's journals: which entries each gained since the last look."""

    def __init__(self, directory_path: str, spec: VolumeSpec) -> None:
        self.directory_path = directory_path
        self.spec = spec
        self._seen: dict[str, tuple[int, int]] = {}  # journal -> (bytes, entries) seen so far

    def new_entries(self) -> list[tuple[str, np.ndarray]]:
        """(journal, entries) for each journal that grew since the last call, entries in commit order."""
        out = []
        for journal in journal_files(self.directory_path):
            try:
                size = os.path.getsize(journal)
            except FileNotFoundError:  # the session closed and merged it meanwhile
                continue
            seen_size, seen_entries = self._seen.get(journal, (0, 0))
            if size == seen_size:
                continue
            fragment = read_journal(journal, self.spec)
            if fragment is None:
                continue
            self._seen[journal] = (size, len(fragment.entries))
            out.append((journal, fragment.entries[seen_entries:]))
        return out


def remove_journals(directory_path: str, journals: list[str]) -> None:
    """Remove merged journals, durably (the folder is fsynced)."""
    for journal in journals:
        os.unlink(journal)
    if journals:
        fsync_folder(directory_path)


def torn_block_files(directory_path: str, old_names: set[str], entries: np.ndarray | None) -> list[str]:
    """Block files of a session (not in ``old_names``) with bytes past their last committed block.

    ``entries`` are all the session's journal entries; a writer killed mid-block leaves such bytes.
    """
    ends: dict[int, int] = {}
    if entries is not None and len(entries):
        for number in np.unique(entries["file"]):
            mine = entries[entries["file"] == number]
            ends[int(number)] = int((mine["offset"] + mine["size"]).max())
    torn = []
    for path in volume_files(directory_path):
        number = block_file_number(directory_path, path)
        if number is None or os.path.basename(path) in old_names:
            continue
        if os.path.exists(fragment_name(directory_path, number)):
            continue  # a batch's block file (complete once its fragment is), not this session's
        size = os.path.getsize(path)
        if size > ends.get(number, 0):
            torn.append(f"{path}: {size - ends.get(number, 0)} uncommitted bytes at the end")
    return torn


def refuse_if_being_written(directory_path: str, nothing_done: str) -> None:
    """Raise :class:`VolumeBusyError` while a writing session is open or its journals are unmerged.

    Tools that copy, move or rewrite a volume's directory would otherwise miss
    the blocks committed only in journals. ``nothing_done`` ends the message
    ("Nothing was copied").
    """
    from .session import read_session  # session imports naming only; imported here to keep journal light

    pending, holder = journal_files(directory_path), read_session(directory_path)
    if pending or holder is not None:
        raise VolumeBusyError(
            f"{directory_path}: the volume is being written"
            + (f" by {holder.describe()}" if holder is not None else "")
            + (f"; blocks not yet merged in {', '.join(pending)}" if pending else "")
            + f"; after writing ends, Directory.open({directory_path!r}, 'r+').close() merges them. {nothing_done}"
        )
