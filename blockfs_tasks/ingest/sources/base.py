"""The :class:`Source` base class and the input checks every kind of source shares.

A kind of source subclasses :class:`Source`, sets ``kind`` and implements
``_read``; the base checks read ranges, pickles without open handles and
drops handles inherited through a fork. The helpers here turn array shapes
and dtypes into the ``(z, y, x)`` shape and native dtype a source reports,
or a :class:`~blockfs_tasks.ingest.errors.SourceError` naming the file.
"""

from __future__ import annotations

import abc
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ...core.checks import check_int
from ...core.codec import SUPPORTED_DTYPES
from ..errors import SourceError

logger = logging.getLogger(__name__)

_SUPPORTED_NAMES = ", ".join(d.name for d in SUPPORTED_DTYPES)


# --------------------------------------------------------------------- helpers
def check_dtype(dtype: Any, where: str) -> np.dtype:
    """Native-byte-order dtype of a source, or SourceError naming ``where`` if blockfs cannot store it."""
    try:
        result = np.dtype(dtype)
    except TypeError as e:
        raise SourceError(f"{where}: data type {dtype!r} is not a numpy dtype") from e
    native: np.dtype = result.newbyteorder("=")
    if native not in SUPPORTED_DTYPES:
        raise SourceError(
            f"{where}: unsupported dtype {result}; blockfs stores {_SUPPORTED_NAMES}"
        )
    return native


def volume_shape(shape: Sequence[int], where: str) -> tuple[tuple[int, int, int], int]:
    """(z, y, x) of an array shape after dropping leading length-1 axes.

    Returns the shape and the number of dropped axes; raises SourceError if
    what is left is not 3D or has a zero extent.
    """
    shape = tuple(int(n) for n in shape)
    lead = 0
    while len(shape) - lead > 3 and shape[lead] == 1:
        lead += 1
    zyx = shape[lead:]
    if len(zyx) != 3:
        raise SourceError(f"{where}: expected a 3D (z, y, x) array. Got shape {shape} instead.")
    if min(zyx) <= 0:
        raise SourceError(f"{where}: every extent must be positive. Got shape (z, y, x) = {zyx}.")
    return (zyx[0], zyx[1], zyx[2]), lead


def is_volume(shape: Sequence[int]) -> bool:
    """True if ``shape`` is 3D after dropping leading length-1 axes."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return len(shape) == 3


def extension(path: str) -> str:
    """The lower-case extension of a file or folder name (a trailing slash ignored)."""
    return os.path.splitext(path.rstrip("/" + os.sep))[1].lower()


# ------------------------------------------------------------------ the base
class Source(abc.ABC):
    """A read-only 3D volume in (z, y, x) order, read in slabs of planes and rows.

    Subclasses set ``kind`` and implement :meth:`_read`; single-file kinds keep
    an open handle in attributes listed in ``_TRANSIENT``, which are dropped when
    pickling and after a fork and reopened on the next read.

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    path
        The file, folder, glob or synthetic spec the source reads.
    shape
        ``(z, y, x)`` extents, Python ints.
    dtype
        Voxel dtype in native byte order.
    """

    kind: ClassVar[str]
    _TRANSIENT: ClassVar[tuple[str, ...]] = ()

    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        for name in self._TRANSIENT:
            setattr(self, name, None)

    # ------------------------------------------------------------ protocol
    def describe(self) -> str:
        """One line: kind, path, shape (z, y, x) and dtype."""
        z, y, x = self.shape
        detail = self._detail()
        detail = f" ({detail})" if detail else ""
        return (
            f"{self.kind} {self.path!r}{detail}: shape (z, y, x) = ({z}, {y}, {x}), "
            f"dtype {self.dtype.name}"
        )

    def read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        """Planes ``[z0, z1)``, rows ``[y0, y1)``, all x.

        Returns
        -------
        numpy.ndarray
            A new C-contiguous ``(z1 - z0, y1 - y0, x)`` array of ``self.dtype``.

        Raises
        ------
        SourceError
            If the range is not inside the source, or the data cannot be read.
        """
        z0, z1, y0, y1 = self._check_range(z0, z1, y0, y1)
        expected = (z1 - z0, y1 - y0, self.shape[2])
        if z0 == z1 or y0 == y1:
            return np.empty(expected, dtype=self.dtype)
        out = self._read(z0, z1, y0, y1)
        if out.shape != expected:
            raise SourceError(
                f"{self.path}: read of z [{z0}, {z1}), y [{y0}, {y1}) gave shape "
                f"{out.shape}, expected {expected}; did the file change?"
            )
        return np.ascontiguousarray(out, dtype=self.dtype)

    def check(self) -> None:
        """Cheap checks of the whole source before any of it is read; raise SourceError once.

        For a planner to call once: kinds made of many files (a TIFF stack)
        read every file's header here, so a bad file fails the run before any
        batch is written, named once instead of by every batch that reads it.
        The default checks nothing (a single file was checked when opened).
        """
        return None

    def close(self) -> None:
        """Release open file handles; a later :meth:`read` reopens them."""
        for name in self._TRANSIENT:
            handle = getattr(self, name, None)
            setattr(self, name, None)
            if handle is not None and hasattr(handle, "close"):
                try:
                    handle.close()
                except Exception:  # closing a broken handle must not mask the caller's error
                    logger.debug("closing %s of %s failed", name, self.path, exc_info=True)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in (*self._TRANSIENT, "_lock", "_pid"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        for name in self._TRANSIENT:
            setattr(self, name, None)

    # ------------------------------------------------------------ for subclasses
    @abc.abstractmethod
    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        """Read a non-empty range already checked to be inside the source."""

    def _detail(self) -> str:
        """Extra words for :meth:`describe` (file count, dataset name...)."""
        return ""

    def _forget_after_fork(self) -> None:
        """Drop handles inherited through a fork, without closing or using them:
        their file offsets are shared with the parent, which may be reading."""
        if self._pid != os.getpid():
            for name in self._TRANSIENT:
                setattr(self, name, None)
            self._lock = threading.Lock()
            self._pid = os.getpid()

    def _check_reopened(self, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        """Raise if a reopened file no longer matches what was opened first."""
        if shape != self.shape or dtype != self.dtype:
            raise SourceError(
                f"{self.path}: changed since it was opened: shape (z, y, x) = {shape}, "
                f"dtype {dtype.name}; expected {self.shape}, dtype {self.dtype.name}"
            )

    def _check_range(self, z0: Any, z1: Any, y0: Any, y1: Any) -> tuple[int, int, int, int]:
        z0, z1 = check_int(z0, "z0", error=SourceError), check_int(z1, "z1", error=SourceError)
        y0, y1 = check_int(y0, "y0", error=SourceError), check_int(y1, "y1", error=SourceError)
        nz, ny, _ = self.shape
        if not (0 <= z0 <= z1 <= nz and 0 <= y0 <= y1 <= ny):
            raise SourceError(
                f"{self.path}: read range z [{z0}, {z1}), y [{y0}, {y1}) is outside the "
                f"source of shape (z, y, x) = {self.shape}; expected "
                f"0 <= z0 <= z1 <= {nz} and 0 <= y0 <= y1 <= {ny}"
            )
        return z0, z1, y0, y1
