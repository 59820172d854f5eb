"""Compression workers for one process's ``write_block`` calls (what ``start_writer_processes()`` starts).

A script that calls ``write_block`` in a loop from one thread would compress
on one core. After ``start_writer_processes()`` the volume hands each block
to this writer instead: the call checks the block and, while a worker thread
has room, queues a copy and returns; the workers compress and append in
parallel (Blosc and ``pwrite`` release the GIL, so threads use every core).
As with the original blockfs, whose writer processes took blocks from a
queue, such a block is committed when :meth:`AsyncBlockWriter.flush`
(``Directory.flush()``) or ``close()`` returns, not when ``write_block`` does.

When every worker is busy and the queue is full, the calling thread
compresses and commits the block itself ("caller runs") instead of waiting:
the producer is one of the compressing threads, so ``cores - 1`` workers
keep every core busy without a thread too many, a block the caller passes
contiguous is compressed without a copy, and one it passes as a view is
compressed from the copy it just made, still in this core's cache (a queued
block is read by another core, from memory). Such a block is committed when
``write_block`` returns, and an error writing it is raised there, as
without workers.

At most ``max_in_flight`` blocks are queued or being compressed by workers,
so memory stays bounded. A block position written again waits for its
earlier write first, so the later block wins, as it does with synchronous
writes. The first error of a worker is raised by every later ``submit`` and
``flush`` (a writer that failed takes nothing more); the blocks committed
before it stay committed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

#: ``commit(position, block, where)``: encode and append one checked block (runs in a worker).
Commit = Callable[[int, np.ndarray, str], None]


class AsyncBlockWriter:
    """Worker threads that compress and commit blocks queued by :meth:`submit`.

    Owned by one process (``pid``): a forked child that inherits it must not
    use it (its threads do not exist there); the Directory checks.
    """

    def __init__(self, commit: Commit, n_threads: int, max_in_flight: int) -> None:
        self.pid = os.getpid()
        self._commit = commit
        self._pool = ThreadPoolExecutor(max(1, n_threads), thread_name_prefix="blockfs-writer")
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self._lock = threading.Lock()
        self._pending: dict[int, Future[None]] = {}  # position -> its newest queued write
        self._error: BaseException | None = None

    def submit(self, position: int, block: np.ndarray, where: str, owned: bool = True) -> None:
        """Queue a checked block, or commit it in this thread when every worker is busy.

        ``owned``: the block is this writer's to keep (a copy nobody else
        holds); otherwise a copy is queued, so the caller may reuse its array
        as soon as this returns.
        """
        self._raise_error()
        with self._lock:
            earlier = self._pending.get(position)
        if earlier is not None:  # the same block again: the later write must land last
            earlier.exception()
        if not self._slots.acquire(blocking=False):  # no room: compress here, from the caller's (cached) bytes
            self._commit(position, block, where)
            return
        try:
            if not owned:
                block = block.copy()
            future = self._pool.submit(self._commit, position, block, where)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._pending[position] = future
        future.add_done_callback(lambda f: self._done(position, f))

    def _done(self, position: int, future: Future[None]) -> None:
        self._slots.release()
        self._settle(position, future)

    def _settle(self, position: int, future: Future[None]) -> None:
        """Forget a finished write; keep its error (the first one) for good."""
        error = future.exception()
        with self._lock:
            if self._pending.get(position) is future:
                del self._pending[position]
            if error is not None and self._error is None:
                self._error = error

    def _raise_error(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:  # once a worker failed, nothing more is taken: never a gap passed as success
            raise error

    def flush(self) -> None:
        """Wait until every queued block is committed; raise the first error of a worker (every time)."""
        while True:
            with self._lock:
                pending = list(self._pending.items())
            if not pending:
                break
            for position, future in pending:
                self._settle(position, future)  # future.exception() waits for it
        self._raise_error()

    def close(self) -> None:
        """:meth:`flush`, then stop the threads (they stop even when flush raises)."""
        try:
            self.flush()
        finally:
            self._pool.shutdown()


def write_through(commit: Commit, checked: Iterable[tuple[int, np.ndarray, str, bool]], n_threads: int) -> int:
    """Commit every ``(position, block, where, owned)`` of ``checked`` on ``n_threads`` threads, the caller's included.

    ``n_threads - 1`` workers take blocks while they have room, the calling
    thread compresses the rest (see :class:`AsyncBlockWriter`); returns once
    every block is committed, with the count. On an error the blocks already
    queued are still committed, then the error is raised.
    """
    writer = AsyncBlockWriter(commit, n_threads - 1, 4 * (n_threads - 1))
    n = 0
    try:
        for position, block, where, owned in checked:
            writer.submit(position, block, where, owned)
            n += 1
    except BaseException:
        with contextlib.suppress(Exception):  # the error in flight is the one to raise
            writer.close()
        raise
    writer.close()
    return n
