"""A rollback journal for writing into an existing file in place (the HDF5 export's file).

An HDF5 library killed in the middle of a write can leave a file whose metadata
points past its end (a chunk index or object header written, the superblock's
end-of-allocation not), which no later open repairs. So the HDF5 export writes
through :class:`JournaledFile`, the file object h5py's ``fileobj`` driver
calls, which keeps SQLite's rollback-journal promise: **before a byte of the
file as it was is overwritten or truncated away, its old value is saved in a
journal beside the file and the journal is fsynced.** Bytes appended past the
old end need no saving. :meth:`JournaledFile.commit` fsyncs the file and then
removes the journal: that removal is the commit point. A journal found later
(:func:`roll_back`) means the writer died before committing: putting the saved
bytes back and truncating to the old size restores the file exactly as it was
before that session, whatever instant the writer died at, so every other
dataset and the export record survive.

Journal layout (``<file>.blockfs-rollback``, little-endian)::

    b"BFSROLL1"  original size (u64)  crc32 of the previous 16 bytes (u32)
    then records: offset (u64)  length (u64)  crc32 of offset, length and data (u32)  data

A torn or damaged record ends the journal: it was never fsynced, so the file
bytes it would have saved were never overwritten. The journal is not a
temporary file: it must never be swept, only rolled back.

One writer at a time: :class:`JournaledFile` holds an exclusive ``flock`` on
the file while it is open (released by the kernel if the process dies), so a
journal seen by a writer holding that lock is always a dead writer's.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from ..core.atomic import fsync_folder, write_all
from ..core.errors import DestinationError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".blockfs-rollback"
MAGIC = b"BFSROLL1"
_HEADER = struct.Struct("<8sQ")
_RECORD = struct.Struct("<QQ")
_CRC = struct.Struct("<I")
COPY_SIZE = 1 << 22


def journal_path(path: str) -> str:
    """The rollback journal of ``path``."""
    return path + JOURNAL_SUFFIX


def _parse(journal: BinaryIO) -> tuple[int, list[tuple[int, int, int]]] | None:
    """(original size, [(offset, length, position of the data in the journal)]), or None without a whole header."""
    head = journal.read(_HEADER.size + _CRC.size)
    if len(head) < _HEADER.size + _CRC.size or head[:8] != MAGIC:
        return None
    if zlib.crc32(head[: _HEADER.size]) != _CRC.unpack_from(head, _HEADER.size)[0]:
        return None
    _, size = _HEADER.unpack_from(head)
    records = []
    while len(meta := journal.read(_RECORD.size + _CRC.size)) == _RECORD.size + _CRC.size:
        offset, length = _RECORD.unpack_from(meta)
        at, crc = journal.tell(), zlib.crc32(meta[: _RECORD.size])
        left = length
        while left and (piece := journal.read(min(left, COPY_SIZE))):
            crc, left = zlib.crc32(piece, crc), left - len(piece)
        if left or crc != _CRC.unpack_from(meta, _RECORD.size)[0]:
            break  # torn or damaged: never fsynced, so the bytes it saves were never overwritten
        records.append((offset, length, at))
    return size, records


def roll_back(path: str, own: bool = False) -> bool:
    """Undo an uncommitted session of ``path`` (a dead writer's, or with ``own`` this process's failed one).

    Returns True if there was one. The caller must hold the file's lock (see
    :class:`JournaledFile`), or know that no writer is alive. Safe to repeat:
    a rollback killed half-way is finished by the next one.
    """
    try:
        journal = open(journal_path(path), "rb")
    except FileNotFoundError:
        return False
    with journal:
        parsed = _parse(journal)
        if parsed is not None:
            size, records = parsed
            fd = os.open(path, os.O_RDWR)
            try:
                for offset, length, at in records:
                    journal.seek(at)
                    for start in range(0, length, COPY_SIZE):
                        write_at(fd, journal.read(min(COPY_SIZE, length - start)), offset + start)
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
            logger.log(logging.INFO if own else logging.WARNING,
                       "%s: rolled back %s (%d saved ranges, back to %d bytes)", path,
                       "this export's unfinished write" if own else "a write interrupted by a crash",
                       len(records), size)
    os.unlink(journal_path(path))
    fsync_folder(path)
    return True


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def pending_rollback(path: str) -> bool:
    """True if ``path`` has a journal: a writer is at work, or died before committing."""
    return os.path.exists(journal_path(path))


class _Ranges:
    """Disjoint sorted byte ranges [a, b): what the journal already holds."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def missing(self, a: int, b: int) -> Iterator[tuple[int, int]]:
        """The parts of [a, b) not held yet."""
        for x, y in self.ranges:
            if y <= a:
                continue
            if x >= b:
                break
            if x > a:
                yield a, x
            a = max(a, y)
        if a < b:
            yield a, b

    def add(self, a: int, b: int) -> None:
        merged: list[tuple[int, int]] = []
        for x, y in sorted([*self.ranges, (a, b)]):
            if merged and x <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], y))
            else:
                merged.append((x, y))
        self.ranges = merged


class JournaledFile(io.RawIOBase):
    """A read-write file object whose session can be rolled back until :meth:`commit`.

    Opening takes the file's exclusive lock (else :class:`DestinationError`:
    another process is writing it), rolls back a dead writer's session, and
    creates the file if it is missing. Give it to ``h5py.File(f, mode)``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DestinationError(
                    f"{self.path}: another process is writing this file; wait for it to end"
                ) from None
            roll_back(self.path)
            self.original_size = os.fstat(self.fd).st_size
            # The journal exists for the whole session, so even a new file's half-written start is undone.
            self.journal_fd: int | None = self._start_journal()
        except BaseException:
            os.close(self.fd)
            raise
        self.position = 0
        self.saved = _Ranges()
        self.committed = False

    # -- the file object h5py's fileobj driver needs
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self.position = offset
        elif whence == os.SEEK_CUR:
            self.position += offset
        else:
            self.position = os.fstat(self.fd).st_size + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = os.preadv(self.fd, [view], self.position)
        self.position += n
        return n

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        self._save(self.position, self.position + len(view))
        write_at(self.fd, view, self.position)
        self.position += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.position if size is None else size
        self._save(size, os.fstat(self.fd).st_size)
        os.ftruncate(self.fd, size)
        return size

    def flush(self) -> None:
        pass  # writes go straight to the file; durability is commit()'s job

    # -- the journal
    def _save(self, a: int, b: int) -> None:
        """Put the file's original bytes [a, b) into the journal, fsynced, before they change."""
        b = min(b, self.original_size)
        if a >= b:
            return
        wrote = False
        for x, y in list(self.saved.missing(a, b)):
            old = os.pread(self.fd, y - x, x)
            record = _RECORD.pack(x, len(old))
            # journal_fd is None only after commit() or close(), when nothing writes any more
            write_all(self.journal_fd, record + _CRC.pack(zlib.crc32(old, zlib.crc32(record))) + old)  # type: ignore[arg-type]
            self.saved.add(x, y)
            wrote = True
        if wrote:
            os.fsync(self.journal_fd)  # type: ignore[arg-type]  # (see above)

    def _start_journal(self) -> int:
        fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            header = _HEADER.pack(MAGIC, self.original_size)
            write_all(fd, header + _CRC.pack(zlib.crc32(header)))
            os.fsync(fd)
            fsync_folder(self.path)  # the journal's name is durable before any byte it protects changes
        except BaseException:
            os.close(fd)
            raise
        return fd

    def commit(self) -> None:
        """Make the session's writes durable and final: fsync the file, then remove the journal."""
        os.fsync(self.fd)
        if self.journal_fd is not None:
            os.close(self.journal_fd)
            self.journal_fd = None
        os.unlink(journal_path(self.path))
        fsync_folder(self.path)  # the commit point (and a new file's name) made durable
        self.committed = True

    def close(self) -> None:
        """Release the file (and its lock). Without :meth:`commit`, the journal stays for the next writer."""
        if self.closed:
            return
        if self.journal_fd is not None:
            os.close(self.journal_fd)
            self.journal_fd = None
        os.close(self.fd)
        super().close()


class RolledBackView(io.RawIOBase):
    """Read-only view of ``path`` as it was before an uncommitted session: the journal's saved bytes over it.

    Reads the file and the journal on demand (a reader never writes, so a
    live writer is never disturbed); without a journal it is the file itself.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.file = open(self.path, "rb")
        self.journal: BinaryIO | None = None
        self.records: list[tuple[int, int, int]] = []
        self.size = os.fstat(self.file.fileno()).st_size
        try:
            self.journal = open(journal_path(self.path), "rb")
        except FileNotFoundError:
            pass
        parsed = _parse(self.journal) if self.journal is not None else None
        if parsed is not None:
            self.size, self.records = parsed
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer)
        a = self.position
        b = min(a + len(view), self.size)
        if a >= b:
            return 0
        out = view.cast("B")
        out[: b - a] = os.pread(self.file.fileno(), b - a, a).ljust(b - a, b"\0")
        journal = self.journal
        if journal is not None:  # else there are no records
            for offset, length, at in self.records:  # later records never overlap earlier ones
                x, y = max(a, offset), min(b, offset + length)
                if x < y:
                    out[x - a : y - a] = os.pread(journal.fileno(), y - x, at + x - offset)
        self.position = b
        return b - a

    def close(self) -> None:
        if not self.closed:
            self.file.close()
            if self.journal is not None:
                self.journal.close()
        super().close()


__all__ = ["JOURNAL_SUFFIX", "JournaledFile", "RolledBackView", "journal_path", "pending_rollback", "roll_back"]
