"""The index of a 2.x directory file, checked page by page against its CRC-32Cs.

A large index is memory-mapped and each page is checked the first time it is
used, so opening costs the same whatever the volume's size (see :mod:`.format`).
"""

from __future__ import annotations

from typing import Any

import google_crc32c
import numpy as np

from .codec import checksum
from .errors import CorruptIndexError, FormatError
from .spec import INDEX_DTYPE, MAX_OFFSET, PAGE_ENTRIES

_STREAM_CHUNK = 8 << 20  # bytes per CRC call when checking a memory-mapped index


class PagedIndex:
    """A memory-mapped index whose pages are checked against their CRC-32C when first used.

    It reads like the numpy array it wraps (an entry, a slice, a field, an
    array of positions, ``np.asarray``); each read first checks the pages it
    touches, so a flipped bit in the index is an error, never a block read as
    zeros. Checking a page twice is harmless, so threads need no lock.
    """

    def __init__(
        self, path: str, array: np.ndarray, page_entries: int, page_crcs: np.ndarray, n_files: int, max_frame: int
    ) -> None:
        self.path = path
        self.page_entries = page_entries
        self.page_crcs = page_crcs
        self._array = array
        self._n_files = n_files
        self._max_frame = max_frame
        self._checked = np.zeros(len(page_crcs), bool)

    dtype = property(lambda self: self._array.dtype)
    shape = property(lambda self: self._array.shape)
    ndim = property(lambda self: 1)
    size = property(lambda self: self._array.size)
    nbytes = property(lambda self: self._array.nbytes)

    def __len__(self) -> int:
        return len(self._array)

    @property
    def n_pages(self) -> int:
        """Number of CRC pages."""
        return len(self.page_crcs)

    def _page(self, page: int) -> np.ndarray:
        return self._array[page * self.page_entries : (page + 1) * self.page_entries]

    def page_error(self, page: int) -> str | None:
        """Recompute page ``page``'s CRC-32C (streaming, bounded memory) and check its entries."""
        entries = self._page(page)
        raw = entries.view(np.uint8)
        crc = 0
        for start in range(0, len(raw), _STREAM_CHUNK):
            crc = google_crc32c.extend(crc, raw[start : start + _STREAM_CHUNK])
        first = page * self.page_entries
        where = f"{self.path}: index page {page} (block positions {first}..{first + len(entries) - 1})"
        if crc != int(self.page_crcs[page]):
            return f"{where} does not match its CRC-32C"
        try:
            check_entries(where, entries, self._n_files, self._max_frame, first)
        except FormatError as e:
            return str(e)
        return None

    def check_page(self, page: int) -> None:
        """Raise unless page ``page`` is sound (checked once, then remembered)."""
        if not self._checked[page]:
            error = self.page_error(page)
            if error is not None:
                raise CorruptIndexError(error)
            self._checked[page] = True

    def check_all(self) -> None:
        """Check every page not yet checked."""
        for page in np.flatnonzero(~self._checked):
            self.check_page(int(page))

    def _check_positions(self, positions: np.ndarray) -> None:
        n = len(self._array)
        valid = positions[(positions >= -n) & (positions < n)] % n
        for page in np.unique(valid // self.page_entries):
            self.check_page(int(page))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):  # the fast path of read_block: one entry
            n, position = len(self._array), int(key)
            if -n <= position < n:
                page = (position % n) // self.page_entries
                if not self._checked[page]:
                    self.check_page(page)
            return self._array[key]
        if isinstance(key, slice):
            span = np.arange(len(self._array))[key]
            if len(span):
                first, last = int(span.min()) // self.page_entries, int(span.max()) // self.page_entries
                for page in range(first, last + 1):
                    self.check_page(page)
            return np.asarray(self._array[key])
        positions = np.asarray(key) if not isinstance(key, (str, tuple)) else None
        if positions is not None and positions.dtype.kind in "iu":
            self._check_positions(positions.astype(np.int64).ravel())
        else:
            self.check_all()
        return np.asarray(self._array[key])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        self.check_all()
        out = np.asarray(self._array)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out

    def __repr__(self) -> str:
        checked = int(self._checked.sum())
        return f"PagedIndex({self.path!r}, {len(self)} entries, {self.n_pages} pages, {checked} checked)"


def index_errors(index: np.ndarray | PagedIndex) -> dict[int, str]:
    """Recompute every page CRC of a memory-mapped index: {page: message} for each bad page.

    A read index (``np.ndarray``) was checked whole when it was read: no errors.
    """
    if not isinstance(index, PagedIndex):
        return {}
    errors = {p: index.page_error(p) for p in range(index.n_pages)}
    return {p: e for p, e in errors.items() if e is not None}


def page_checksums(index: np.ndarray, page_entries: int = PAGE_ENTRIES) -> np.ndarray:
    """CRC-32C of each page of ``page_entries`` entries of ``index``."""
    raw = np.ascontiguousarray(index).view(np.uint8)
    step = page_entries * INDEX_DTYPE.itemsize
    return np.array([checksum(raw[i : i + step]) for i in range(0, len(raw), step)], "<u4")


def check_entries(where: str, entries: np.ndarray, n_files: int, max_frame: int, first: int = 0) -> None:
    """Raise unless every present entry names a listed block file and a plausible byte range."""
    present = entries["file"] != 0
    bad = present & (
        (entries["file"] > n_files) | (entries["offset"] >= MAX_OFFSET) | (entries["size"] > max_frame)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        e = entries[i]
        raise FormatError(
            f"{where}: the entry of block position {first + i} (file {int(e['file'])}, offset {int(e['offset'])}, "
            f"size {int(e['size'])}) names no block file of the {n_files} listed or no possible frame "
            f"(at most {max_frame} bytes)"
        )
