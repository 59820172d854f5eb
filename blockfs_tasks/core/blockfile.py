"""Block files: their names, the live appender that writes one, the reader.

Block file ``k`` of a volume is ``<directory file>.<k>``. A live writer
process claims the first free ``k`` with ``O_CREAT | O_EXCL``, which needs no
lock, and is then the only process that appends to that file. Each appended
block is committed by one 32-byte entry appended to the shared journal
(``O_APPEND``: concurrent appends of one small write do not interleave).
"""

from __future__ import annotations

import itertools
import os
import re
import threading

import numpy as np

from .atomic import write_all
from .codec import BlockCodec, checksum
from .errors import ChecksumError, FormatError, MissingFileError, TruncatedFileError
from .format import encode_entry

JOURNAL_SUFFIX = ".journal"
FRAGMENT_SUFFIX = ".fragment"


def block_file_name(directory_path: str, number: int) -> str:
    """Path of block file ``number`` of the volume at ``directory_path``."""
    return f"{directory_path}.{number}"


def fragment_name(directory_path: str, number: int) -> str:
    """Path of the fragment that indexes block file ``number``."""
    return f"{block_file_name(directory_path, number)}{FRAGMENT_SUFFIX}"


def journal_name(directory_path: str) -> str:
    """Path of the journal that the live writers of a volume share."""
    return f"{directory_path}{JOURNAL_SUFFIX}"


def block_file_number(directory_path: str, path: str) -> int | None:
    """The ``k`` of a block file path ``<directory>.<k>``, or None for any other path."""
    match = re.fullmatch(re.escape(os.path.basename(directory_path)) + r"\.(\d+)", os.path.basename(path))
    return int(match.group(1)) if match else None


class BlockFileAppender:
    """One process's block file of a live volume: appends blocks, journals entries."""

    def __init__(self, directory_path: str) -> None:
        for number in itertools.count():
            path = block_file_name(directory_path, number)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileExistsError:
                continue
            break
        self.number = number
        self.path = path
        self.pid = os.getpid()
        self._offset = 0
        self._lock = threading.Lock()
        try:
            self._journal_fd = os.open(journal_name(directory_path), os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError as e:
            os.close(self._fd)
            raise MissingFileError(
                f"{journal_name(directory_path)}: the journal of a volume open for writing is gone"
            ) from e

    def append(self, position: int, data: bytes) -> None:
        """Append one encoded block, then commit it with its journal entry."""
        crc = checksum(data)
        with self._lock:
            write_all(self._fd, data)
            entry = encode_entry(position, self.number, self._offset, len(data), crc)
            if os.write(self._journal_fd, entry) != len(entry):
                raise OSError(f"short append to the journal of {self.path}")
            self._offset += len(data)

    def close(self) -> None:
        """Flush the block file to disk and close both files."""
        with self._lock:
            if self._fd < 0:
                return
            os.fsync(self._fd)
            os.close(self._fd)
            os.close(self._journal_fd)
            self._fd = self._journal_fd = -1


class _ProcessAppenders:
    """This process's appender of each volume session, shared by all its Directory copies.

    Pickled copies of a Directory (one per ``Pool.starmap`` chunk, say) must
    not each claim a block file: a process writes one block file per volume
    session. The session is identified by the journal's inode, which
    ``create()`` or ``open("r+")`` makes anew. This is per-process state by
    nature, like an open file; it is reset in a forked child.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._appenders: dict[tuple[str, int], BlockFileAppender] = {}
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._appenders = {}  # the parent's files are the parent's

    def get(self, directory_path: str) -> BlockFileAppender:
        try:
            session = os.stat(journal_name(directory_path)).st_ino
        except FileNotFoundError as e:
            raise MissingFileError(
                f"{journal_name(directory_path)}: the journal of a volume open for writing is gone"
            ) from e
        key = (directory_path, session)
        appender = self._appenders.get(key)
        if appender is None:
            with self._lock:
                appender = self._appenders.get(key)
                if appender is None:
                    appender = self._appenders[key] = BlockFileAppender(directory_path)
        return appender

    def release(self, directory_path: str) -> None:
        """Close this process's appenders of the volume (every session)."""
        with self._lock:
            for key in [k for k in self._appenders if k[0] == directory_path]:
                self._appenders.pop(key).close()


process_appenders = _ProcessAppenders()


class BlockFileReader:
    """Reads blocks from a volume's block files: one ``pread`` per block.

    File descriptors are opened on first use and kept; ``pread`` does not move
    a shared file position, so threads and forked children can share them.
    """

    def __init__(self, paths: list[str], verify_checksums: bool) -> None:
        self.paths = paths
        self.verify_checksums = verify_checksums
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def _fd(self, i: int) -> int:
        fd = self._fds.get(i)
        if fd is None:
            with self._lock:
                fd = self._fds.get(i)
                if fd is None:
                    try:
                        fd = os.open(self.paths[i], os.O_RDONLY)
                    except FileNotFoundError as e:
                        raise MissingFileError(f"{self.paths[i]}: block file is missing") from e
                    self._fds[i] = fd
        return fd

    def read(
        self,
        entry: np.void,
        dtype: np.dtype,
        shape: tuple[int, int, int],
        where: str,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Read and decode the block an index entry points at (into ``out`` if given).

        ``where`` names the block in errors.
        """
        i = int(entry["file"]) - 1
        offset, size = int(entry["offset"]), int(entry["size"])
        data = os.pread(self._fd(i), size, offset)
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
        try:
            return BlockCodec.decode(data, dtype, shape, out)
        except FormatError as e:
            raise FormatError(f"{self.paths[i]}: {where} at offset {offset}: {e}") from e

    def close(self) -> None:
        """Close every open file descriptor."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
