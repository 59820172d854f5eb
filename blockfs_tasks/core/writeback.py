"""Early writeback: start writing a block file's appended bytes to disk while the writer goes on.

A writer fsyncs its block file before anything may point at its bytes
(``close()``, a batch's commit). Left alone, the kernel keeps those bytes
dirty in the page cache until then (background writeback starts only past
``dirty_background_ratio``, gigabytes on a large machine), so that fsync
waits for the whole file: about 0.2 s per GiB of raw data here, a sixth of
an ingest. :class:`Writeback` asks the kernel to start writing each few MiB
as soon as they are appended (``sync_file_range(SYNC_FILE_RANGE_WRITE)``,
which only queues the I/O), so the disk works while the writer compresses
and the final fsync finds little left.

It is a hint and nothing else: durability still comes from the fsync, which
is unchanged. Where ``sync_file_range`` does not exist (not Linux) or fails
(a file system without it), the hint is dropped, silently.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Bytes appended between two writeback requests: large enough that the requests cost nothing
#: (one system call per 8 MiB), small enough that the disk starts early.
STEP = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start write-out of dirty pages not already under write-out

SyncFileRange = Callable[[int, int, int], bool]


@functools.cache
def _libc_sync_file_range() -> SyncFileRange | None:
    """``sync_file_range(fd, offset, nbytes)`` of the C library (True if the request was taken), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this process runs on (no lookup, no subprocess)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, nbytes: int) -> bool:
        return bool(function(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE) == 0)

    return start


class Writeback:
    """Starts the writeback of a file's bytes each time :data:`STEP` more were written.

    ``wrote(end)`` is told the end of the bytes written so far (they are
    written in order, as appenders do); the range since the last request is
    handed to the kernel once it reaches ``step`` bytes. The first refusal of
    the kernel turns the hints off for this file.
    """

    def __init__(self, fd: int, step: int = STEP, start: int = 0) -> None:
        self.fd = fd
        self.step = step
        self.started = start  # bytes before this offset were handed to the kernel already
        self._sync = _libc_sync_file_range()

    @property
    def enabled(self) -> bool:
        """False where the platform or the file system has no ``sync_file_range``."""
        return self._sync is not None

    def wrote(self, end: int) -> None:
        """The file's bytes up to ``end`` are written: start their writeback if ``step`` have gathered."""
        if self._sync is None or end - self.started < self.step:
            return
        if not self._sync(self.fd, self.started, end - self.started):
            logger.debug("sync_file_range refused on descriptor %d (errno %d): no early writeback",
                         self.fd, ctypes.get_errno())
            self._sync = None
            return
        self.started = end

    def rewound(self, end: int) -> None:
        """The file was cut back to ``end`` (a failed append undone)."""
        self.started = min(self.started, end)
