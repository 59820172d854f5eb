"""A remote directory file read in pieces: a file-like view of its head, and its index fetched page by page.

Opening a remote 2.1.0 volume fetches the header, JSON metadata and page
table (usually in the first ranged GET), never the whole index: each index
page is fetched the first time a block on it is looked up, checked against
its CRC-32C from the page table, and kept. Opening a volume of 20 million
blocks therefore costs a few requests, not 400 MB. Format 2.0.0 (one CRC over
the whole index) and 1.0.0 (no checksums) indexes are fetched whole at open.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .bytesource import ByteSource
from .errors import TruncatedFileError
from .paged_index import PagedIndex
from .spec import INDEX_DTYPE

#: Bytes fetched by the first request of a remote directory: header, metadata, page table and first pages.
HEAD_FETCH = 64 << 10
#: Index pages fetched concurrently at most, when many are needed at once.
PAGES_PER_BATCH = 64


class SourceFile:
    """A read-only, seekable file over one object of a byte source (what the directory readers need).

    The first read fetches at least ``readahead`` bytes from the start, and
    reads inside what was fetched cost no request.
    """

    def __init__(self, source: ByteSource, name: str, readahead: int = HEAD_FETCH) -> None:
        self.source = source
        self.name = name
        self.size = source.size(name)
        self._pos = 0
        self._buffer = b""  # bytes 0 .. len(_buffer) of the object
        self._readahead = readahead

    @property
    def prefix(self) -> bytes:
        """The bytes from the object's start already fetched."""
        return self._buffer

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all the rest if negative) from the current position."""
        end = self.size if n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        if end <= len(self._buffer):
            data = self._buffer[self._pos : end]
        elif self._pos <= len(self._buffer) and end <= max(self._readahead, len(self._buffer)):
            self._buffer = self.source.read(self.name, 0, min(self.size, max(self._readahead, end)))
            data = self._buffer[self._pos : end]
        else:
            data = self.source.read(self.name, self._pos, end - self._pos)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset`` (from the start; whence 1 and 2 as for files)."""
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self.size + offset
        return self._pos

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def close(self) -> None:
        """Nothing to release (the source is shared)."""

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemotePagedIndex(PagedIndex):
    """A 2.1.0 index whose pages are fetched from a byte source when first used, checked, and kept.

    Reads like :class:`PagedIndex` (an entry, a slice, a field, an array of
    positions, ``np.asarray``). Looking up one block costs at most one ranged
    GET of its page (about 80 KiB), the first time; reading the whole index
    (a field, ``np.asarray``) fetches every page, many at once.
    """

    dtype = INDEX_DTYPE

    def __init__(
        self,
        source: ByteSource,
        url: str,
        index_offset: int,
        n: int,
        page_entries: int,
        page_crcs: np.ndarray,
        n_files: int,
        max_frame: int,
        prefix: bytes = b"",
    ) -> None:
        super().__init__(url, np.empty(0, INDEX_DTYPE), page_entries, page_crcs, n_files, max_frame)
        self._source = source
        self._offset = index_offset
        self._n = n
        self._pages: dict[int, np.ndarray] = {}
        self._fetch_lock = threading.Lock()
        for page in range(len(page_crcs)):  # pages already inside the first request's bytes
            start, size = self._page_range(page)
            if start + size > len(prefix):
                break
            self._pages[page] = np.frombuffer(prefix[start : start + size], INDEX_DTYPE)

    shape = property(lambda self: (self._n,))
    size = property(lambda self: self._n)
    nbytes = property(lambda self: self._n * INDEX_DTYPE.itemsize)

    def __len__(self) -> int:
        return self._n

    @property
    def pages_fetched(self) -> int:
        """Number of index pages held (fetched, or inside the first request)."""
        return len(self._pages)

    def _page_range(self, page: int) -> tuple[int, int]:
        first = page * self.page_entries
        count = min(self.page_entries, self._n - first)
        return self._offset + first * INDEX_DTYPE.itemsize, count * INDEX_DTYPE.itemsize

    def fetch(self, pages: Any) -> None:
        """Fetch the pages not held yet of ``pages`` (concurrently, in batches)."""
        missing = sorted({int(p) for p in pages} - self._pages.keys())
        for i in range(0, len(missing), PAGES_PER_BATCH):
            batch = missing[i : i + PAGES_PER_BATCH]
            ranges = [(self.path, *self._page_range(p)) for p in batch]
            for page, (_, start, size), data in zip(batch, ranges, self._source.read_many(ranges), strict=True):
                if len(data) != size:
                    raise TruncatedFileError(
                        f"{self.path}: index page {page} needs bytes {start}..{start + size}, got {len(data)}"
                    )
                with self._fetch_lock:
                    self._pages.setdefault(page, np.frombuffer(data, INDEX_DTYPE))

    def page_error(self, page: int) -> str | None:
        """As :meth:`PagedIndex.page_error` (a scan of every page): a page not held is fetched with the next ones."""
        if page not in self._pages:
            self.fetch(range(page, min(page + PAGES_PER_BATCH, self.n_pages)))
        return super().page_error(page)

    def check_page(self, page: int) -> None:
        """As :meth:`PagedIndex.check_page`; a block lookup fetches its own page only (one ranged GET)."""
        if not self._checked[page] and page not in self._pages:
            self.fetch([page])
        super().check_page(page)

    def _page(self, page: int) -> np.ndarray:
        held = self._pages.get(page)
        if held is None:
            self.fetch([page])
            held = self._pages[page]
        return held

    def check_all(self) -> None:
        """Fetch and check every page not yet checked."""
        self.fetch(np.flatnonzero(~self._checked))
        super().check_all()

    def _entries(self, positions: np.ndarray) -> np.ndarray:
        """The entries at non-negative ``positions`` (pages fetched and checked first)."""
        pages = np.unique(positions // self.page_entries)
        self.fetch(pages)
        out = np.empty(positions.shape, INDEX_DTYPE)
        for page in pages:
            self.check_page(int(page))
            mask = positions // self.page_entries == page
            out[mask] = self._pages[int(page)][positions[mask] - int(page) * self.page_entries]
        return out

    def __getitem__(self, key: Any) -> Any:
        n = self._n
        if isinstance(key, (int, np.integer)):  # read_block's path: one entry
            position = int(key)
            if not -n <= position < n:
                raise IndexError(f"index {position} is out of bounds for an index of {n} entries")
            position %= n
            page = position // self.page_entries
            if not self._checked[page]:
                self.check_page(page)
            return self._pages[page][position - page * self.page_entries]
        if isinstance(key, slice):
            return self._entries(np.arange(n)[key])
        positions = np.asarray(key) if not isinstance(key, (str, tuple)) else None
        if positions is not None and positions.dtype.kind in "iu":
            if positions.size and (positions.min() < -n or positions.max() >= n):
                raise IndexError(f"a position is out of bounds for an index of {n} entries")
            return self._entries(positions.astype(np.int64) % max(n, 1))
        return np.asarray(self)[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        self.check_all()
        pages = [self._pages[p] for p in range(self.n_pages)]
        out = np.concatenate(pages) if pages else np.empty(0, INDEX_DTYPE)
        return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)

    def __repr__(self) -> str:
        return (
            f"RemotePagedIndex({self.path!r}, {len(self)} entries, {self.n_pages} pages, "
            f"{self.pages_fetched} fetched, {int(self._checked.sum())} checked)"
        )
