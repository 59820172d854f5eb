"""Bounded parallel map over threads.

Blosc, zlib and file IO release the GIL, so threads are enough to keep every
core busy compressing or decompressing blocks. The bound on work in flight is
what keeps memory flat however many items the iterable yields.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], n_threads: int, max_in_flight: int | None = None
) -> Iterator[R]:
    """Yield ``fn(item)`` in order, running at most ``max_in_flight`` at once.

    ``max_in_flight`` defaults to twice ``n_threads``. With one thread the
    items are processed inline, in the caller's thread. The first exception
    raised by ``fn`` propagates; items not yet started are not run.
    """
    if n_threads <= 1:
        for item in items:
            yield fn(item)
        return
    limit = max_in_flight or 2 * n_threads
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(n_threads, thread_name_prefix="blockfs") as pool:
        try:
            for item in items:
                if len(pending) >= limit:
                    yield pending.popleft().result()
                pending.append(pool.submit(fn, item))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
