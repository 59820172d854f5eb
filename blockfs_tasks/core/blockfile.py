"""Block files: the live appender that writes one (with its :class:`~.journal.Journal`), the reader.

Block file ``k`` of a volume is ``<directory file>.<k>``. A live writer
process claims the first free ``k`` with ``O_CREAT | O_EXCL``, which needs no
lock, and is then the only process that writes to that file and to its
journal ``<directory file>.<k>.journal``. Each appended block is committed by
one 32-byte entry in that journal, written after the block's bytes. No two
processes ever write to the same file, so nothing depends on appends being
atomic across processes or hosts (they are not on NFS). File names are
made in :mod:`.naming`.

An appender writes at offsets it tracks itself (``pwrite``), and a failed
write is undone (both files truncated back to their last committed end)
before the error is raised, so one failed block never shifts the blocks after
it. If even that fails, the appender refuses every later write.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading

import numpy as np

from .atomic import pwrite_all
from .bytesource import ByteSource, LocalSource
from .codec import BlockCodec, Codec, checksum
from .errors import (
    ChecksumError,
    FormatError,
    TruncatedFileError,
    WriteFailedError,
)
from .fragment import encode_entry
from .grid import ZYX
from .journal import Journal, journal_files
from .naming import (
    FRAGMENT_SUFFIX,
    JOURNAL_SUFFIX,
    block_file_name,
    block_file_number,
    fragment_name,
    journal_name,
    legacy_journal_name,
)
from .writeback import Writeback

# Names that moved to .naming, .journal and .atomic, importable from here as before.
__all__ = [
    "FRAGMENT_SUFFIX",
    "JOURNAL_SUFFIX",
    "BlockFileAppender",
    "BlockFileReader",
    "block_file_name",
    "block_file_number",
    "fragment_name",
    "journal_files",
    "journal_name",
    "legacy_journal_name",
    "process_appenders",
    "pwrite_all",
]


class BlockFileAppender:
    """One process's block file of a live volume and its journal: appends and commits blocks.

    ``journal_header`` is the header every journal starts with (the volume's spec).
    """

    def __init__(self, directory_path: str, journal_header: bytes) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._failure: str | None = None
        for number in itertools.count():
            path = block_file_name(directory_path, number)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            try:
                self._journal = Journal.create(directory_path, number, journal_header)
            except FileExistsError:  # a journal left without its block file (a crash in create())
                os.close(self._fd)
                os.unlink(path)
                continue
            except BaseException:
                os.close(self._fd)
                os.unlink(path)
                raise
            break
        self.number = number
        self.path = path
        self.journal_path = self._journal.path
        self._offset = 0  # end of the last committed block
        self._writeback = Writeback(self._fd)  # so close()'s fsync finds the bytes mostly on disk

    def append(self, position: int, data: bytes) -> None:
        """Append one encoded block, then commit it with its journal entry.

        On any error neither file keeps a byte of this block (both are
        truncated back), so the next block lands where it should; the error
        names the file. If the truncation fails too, this appender refuses
        every later block rather than write at a wrong offset.
        """
        crc = checksum(data)
        with self._lock:
            if self._failure is not None:
                raise WriteFailedError(errno.EIO, self._failure, self.path)
            what = f"appending a block of {len(data)} bytes at offset {self._offset}"
            try:
                pwrite_all(self._fd, data, self._offset)
            except OSError as e:
                self._undo(e, self.path, what)
            entry = encode_entry(position, self.number, self._offset, len(data), crc)
            try:
                self._journal.append(entry)
            except OSError as e:
                self._undo(e, self.journal_path, f"committing the block at offset {self._offset} of {self.path}")
            self._offset += len(data)
            self._writeback.wrote(self._offset)

    def _undo(self, error: OSError, path: str, what: str) -> None:
        """Truncate both files back to their committed ends, then raise ``error`` naming ``path``."""
        message = f"{what}: {error.strerror or error}; the block was not committed"
        try:
            os.ftruncate(self._fd, self._offset)
            self._writeback.rewound(self._offset)
            self._journal.truncate()
        except OSError as undo_error:
            self._failure = (
                f"{message}, and truncating back to the last committed block failed too "
                f"({undo_error.strerror or undo_error}): this process writes no more blocks to {self.path}"
            )
            message = self._failure
        raise WriteFailedError(error.errno or errno.EIO, message, path) from error

    def close(self) -> None:
        """Flush the block file to disk and close both files.

        A failed fsync is raised (naming the file) and remembered: the bytes
        may never reach the disk, so a later close never reports success.
        """
        with self._lock:
            if self._fd < 0:
                if self._failure is not None:
                    raise WriteFailedError(errno.EIO, self._failure, self.path)
                return
            try:
                os.fsync(self._fd)
            except OSError as e:
                self._failure = f"fsync failed ({e.strerror or e}): blocks written to it may not be on disk"
                raise WriteFailedError(e.errno or errno.EIO, self._failure, self.path) from e
            finally:
                os.close(self._fd)
                self._journal.close()
                self._fd = -1


class _ProcessAppenders:
    """This process's appender of each volume session, shared by all its Directory copies.

    Pickled copies of a Directory (one per ``Pool.starmap`` chunk, say) must
    not each claim a block file: a process writes one block file per volume
    session. ``session`` identifies the writing session (the caller passes
    the identity of the volume's session file, which ``create()`` or
    ``open("r+")`` makes anew). This is per-process state by nature, like an
    open file; it is reset in a forked child.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._appenders: dict[tuple[str, int], BlockFileAppender] = {}
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._appenders = {}  # the parent's files are the parent's

    def get(self, directory_path: str, session: int, journal_header: bytes) -> BlockFileAppender:
        """This process's appender for ``session`` of the volume, made on first use."""
        key = (directory_path, session)
        appender = self._appenders.get(key)
        if appender is None:
            with self._lock:
                appender = self._appenders.get(key)
                if appender is None:
                    appender = self._appenders[key] = BlockFileAppender(directory_path, journal_header)
        return appender

    def release(self, directory_path: str) -> None:
        """Flush and close this process's appenders of the volume (every session).

        Every appender is closed; the first error (a failed fsync) is raised after.
        """
        with self._lock:
            appenders = [self._appenders.pop(k) for k in [k for k in self._appenders if k[0] == directory_path]]
        first: BaseException | None = None
        for appender in appenders:
            try:
                appender.close()
            except OSError as e:
                first = first or e
        if first is not None:
            raise first


process_appenders = _ProcessAppenders()


class BlockFileReader:
    """Reads blocks from a volume's block files through a :class:`~.bytesource.ByteSource`.

    One ``pread`` per block locally (descriptors opened on first use and kept;
    ``pread`` does not move a shared file position, so threads and forked
    children can share them), one ranged GET per block remotely. ``paths`` are
    the block files' paths, or their URLs for a remote source.
    """

    def __init__(self, paths: list[str], verify_checksums: bool, source: ByteSource | None = None) -> None:
        self.paths = paths
        self.verify_checksums = verify_checksums
        self.source = source if source is not None else LocalSource()

    def fd(self, i: int) -> int:
        """The read-only descriptor of block file ``i`` (an index into ``paths``), opened on first use (local only)."""
        if not isinstance(self.source, LocalSource):
            raise TypeError(f"{self.paths[i]} is read through {type(self.source).__name__}, not a file descriptor")
        return self.source.fd(self.paths[i])

    def read(
        self,
        entry: np.void,
        dtype: np.dtype,
        shape: ZYX,
        where: str,
        out: np.ndarray | None = None,
        codec: Codec | None = None,
    ) -> np.ndarray:
        """Read and decode the block an index entry points at (into ``out`` if given).

        ``where`` names the block in errors; ``codec`` is the volume's (Blosc by default).
        """
        i, offset, size = int(entry["file"]) - 1, int(entry["offset"]), int(entry["size"])
        return self.decode(self.source.read(self.paths[i], offset, size), entry, dtype, shape, where, out, codec)

    def read_frames(self, entries: list[np.void]) -> list[bytes]:
        """The stored frames of present ``entries`` (concurrently for a remote source), unchecked."""
        return self.source.read_many(
            [(self.paths[int(e["file"]) - 1], int(e["offset"]), int(e["size"])) for e in entries]
        )

    def decode(
        self, data: bytes, entry: np.void, dtype: np.dtype, shape: ZYX, where: str,
        out: np.ndarray | None = None, codec: Codec | None = None,
    ) -> np.ndarray:
        """Check a frame read for ``entry`` (length, CRC-32C) and decode it with ``codec`` (into ``out`` if given)."""
        self.check(data, entry, where)
        i, offset = int(entry["file"]) - 1, int(entry["offset"])
        try:
            return (codec or BlockCodec()).decode(data, dtype, shape, out)
        except FormatError as e:
            raise FormatError(f"{self.paths[i]}: {where} at offset {offset}: {e}") from e

    def check(self, data: bytes, entry: np.void, where: str) -> None:
        """Raise unless ``data`` is the whole frame of ``entry`` and matches its CRC-32C (when the format has one)."""
        i, offset, size = int(entry["file"]) - 1, int(entry["offset"]), int(entry["size"])
        if len(data) != size:
            raise TruncatedFileError(
                f"{self.paths[i]}: block file is truncated: {where} needs bytes "
                f"{offset}..{offset + size}, the file ends at {offset + len(data)}"
            )
        if self.verify_checksums and checksum(data) != int(entry["crc32c"]):
            raise ChecksumError(
                f"{self.paths[i]}: {where} at offset {offset}: checksum mismatch "
                f"(stored bytes are corrupt)"
            )

    def close(self) -> None:
        """Close every open file descriptor (a remote source holds none)."""
        self.source.close()
