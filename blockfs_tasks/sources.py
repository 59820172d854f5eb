"""Ingest sources: read (z, y, x) slabs of a 3D volume from files on disk.

A source is named by one string; :func:`open_source` infers its kind::

    /data/scan/img_*.tiff          tiff-stack  glob of 2D TIFF planes, one per z
    /data/scan/                    tiff-stack  a folder: every *.tif / *.tiff in it
    /data/volume.tif               tiff-3d     one 3D TIFF: multi-page, one 3D page,
                                               or a one-channel ImageJ hyperstack
    /data/volume.h5:/group/dset    hdf5        a dataset of an HDF5 file
    /data/volume.h5                hdf5        the only 3D dataset in the file
    /data/volume.zarr              zarr        a zarr v2 or v3 array
    /data/volume.zarr:path/to/arr  zarr        an array inside a zarr group
    /data/volume.npy               npy         a 3D .npy file
    synthetic:ZxYxX[:dtype][:seed=N]
                                   synthetic   blockfs_tasks.synthetic.SyntheticVolume,
                                               e.g. synthetic:512x1024x1024:uint16:seed=3

Rules, in the order they are applied:

* ``synthetic:`` first; then an existing folder (a zarr store if its name ends
  in ``.zarr`` or it holds ``zarr.json`` / ``.zarray`` / ``.zgroup``, otherwise a
  folder of TIFF planes); then an existing file, by extension (``.tif``,
  ``.tiff``, ``.h5``, ``.hdf5``, ``.hdf``, ``.npy``); then ``file.h5:key`` or
  ``store.zarr:key``; then a glob (any of ``*``, ``?``, ``[``) of TIFF planes.
  ``~`` is expanded.
* Planes of a stack are taken in natural sort order (``img_2`` before
  ``img_10``). The first plane gives the (y, x) shape and the dtype; every
  plane read later is checked against it.
* Without ``:key``, an HDF5 file or zarr group must hold exactly one 3D
  dataset / array.
* An array is 3D after dropping leading axes of length 1, so a
  ``(1, 1, z, y, x)`` OME-Zarr level is accepted. Every extent must be
  positive and the dtype one blockfs stores: (u)int8-64, float32, float64.

Every source has ``kind``, ``path``, ``shape`` (z, y, x) and ``dtype``
(native byte order), ``describe()``, ``read(z0, z1, y0, y1)`` returning the
C-contiguous ``(z1 - z0, y1 - y0, x)`` array of planes ``[z0, z1)`` and rows
``[y0, y1)``, and ``close()`` (also a context manager; a later ``read``
reopens). Reads touch only what they return: TIFF strips or tiles covering
the rows, HDF5 / zarr / memory-mapped ``.npy`` slices; memory is bounded by
the request, never by the volume. Sources pickle without their open file
handles and reopen lazily (also after a fork), so Luigi workers can receive
them. Every bad input raises :class:`~blockfs_tasks.core.errors.SourceError`
naming the file and the problem.
"""

from __future__ import annotations

import abc
import glob
import logging
import math
import operator
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import numpy as np

from .core.codec import SUPPORTED_DTYPES
from .core.errors import SourceError

__all__ = [
    "ACCEPTED_FORMS",
    "KINDS",
    "HDF5Source",
    "NpySource",
    "Source",
    "SourceError",
    "SyntheticSource",
    "Tiff3DSource",
    "TiffStackSource",
    "ZarrSource",
    "check_extent",
    "open_source",
]

logger = logging.getLogger(__name__)

#: The kinds of source, as ``Source.kind`` spells them.
KINDS: tuple[str, ...] = ("tiff-stack", "tiff-3d", "hdf5", "zarr", "npy", "synthetic")

#: The accepted source strings, for error messages and the README.
ACCEPTED_FORMS = (
    "a glob of 2D TIFF planes ('/data/img_*.tif') or a folder of *.tif/*.tiff; "
    "a 3D TIFF file ('/data/volume.tif'); "
    "an HDF5 dataset ('/data/volume.h5:/group/dataset', also .hdf5/.hdf); "
    "a zarr array ('/data/volume.zarr' or '/data/group.zarr:path/to/array'); "
    "a 3D .npy file ('/data/volume.npy'); "
    "'synthetic:ZxYxX[:dtype][:seed=N]' (e.g. 'synthetic:64x256x256:uint16:seed=3')"
)

_TIFF_EXTS = (".tif", ".tiff")
_HDF5_EXTS = (".h5", ".hdf5", ".hdf")
_HDF5_KEY = re.compile(r"^(?P<path>.+?\.(?:h5|hdf5|hdf)):(?P<key>.*)$", re.IGNORECASE)
_ZARR_KEY = re.compile(r"^(?P<path>.+?\.zarr)/?:(?P<key>.*)$", re.IGNORECASE)
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
_SYNTHETIC_PREFIX = "synthetic:"
_SYNTHETIC_SHAPE = re.compile(r"^(\d+)[xX](\d+)[xX](\d+)$")
_SUPPORTED_NAMES = ", ".join(d.name for d in SUPPORTED_DTYPES)

# TIFF compressions whose decoder needs the JPEG tables (as TiffPage.segments does).
_JPEG_COMPRESSIONS = frozenset({6, 7, 34892, 33007})


# --------------------------------------------------------------------- helpers
def _as_index(value: Any, what: str) -> int:
    """``value`` as a Python int; bools, floats and others are rejected."""
    if isinstance(value, (bool, np.bool_)):
        raise SourceError(f"Expected an integer for {what}. Got bool {value!r} instead.")
    try:
        return operator.index(value)
    except TypeError:
        raise SourceError(
            f"Expected an integer for {what}. Got {type(value).__name__} {value!r} instead."
        ) from None


def _check_dtype(dtype: Any, where: str) -> np.dtype:
    """Native-byte-order dtype of a source, or SourceError if blockfs cannot store it."""
    try:
        result = np.dtype(dtype)
    except TypeError as e:
        raise SourceError(f"{where}: data type {dtype!r} is not a numpy dtype") from e
    native = result.newbyteorder("=")
    if native not in SUPPORTED_DTYPES:
        raise SourceError(
            f"{where}: unsupported dtype {result}; blockfs stores {_SUPPORTED_NAMES}"
        )
    return native


def _volume_shape(shape: Sequence[int], where: str) -> tuple[tuple[int, int, int], int]:
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


def _is_volume(shape: Sequence[int]) -> bool:
    """True if ``shape`` is 3D after dropping leading length-1 axes."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return len(shape) == 3


def _ext(path: str) -> str:
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
        z0, z1 = _as_index(z0, "z0"), _as_index(z1, "z1")
        y0, y1 = _as_index(y0, "y0"), _as_index(y1, "y1")
        nz, ny, _ = self.shape
        if not (0 <= z0 <= z1 <= nz and 0 <= y0 <= y1 <= ny):
            raise SourceError(
                f"{self.path}: read range z [{z0}, {z1}), y [{y0}, {y1}) is outside the "
                f"source of shape (z, y, x) = {self.shape}; expected "
                f"0 <= z0 <= z1 <= {nz} and 0 <= y0 <= y1 <= {ny}"
            )
        return z0, z1, y0, y1


# ---------------------------------------------------------------------- TIFF
def _import_tifffile() -> Any:
    try:
        import tifffile
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("install tifffile to read TIFF sources") from e
    return tifffile


def _open_tiff(path: str) -> Any:
    """Open a TIFF file, turning every failure into a SourceError naming it."""
    tifffile = _import_tifffile()
    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except Exception as e:  # TiffFileError, OSError, struct errors on garbage
        raise SourceError(f"{path}: not a readable TIFF file ({e})") from e


def _read_exact(fh: Any, lock: AbstractContextManager[Any], offset: int, size: int,
                path: str, what: str) -> bytes:
    with lock:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise SourceError(
            f"{path}: truncated file: {what} at byte {offset} needs {size} bytes, "
            f"found {len(data)}"
        )
    return data


def _read_page_region(
    fh: Any,
    lock: AbstractContextManager[Any],
    page: Any,
    byteorder: str,
    d0: int,
    d1: int,
    y0: int,
    y1: int,
    out: np.ndarray,
    path: str,
) -> None:
    """Copy depths ``[d0, d1)`` and rows ``[y0, y1)`` of one TIFF page into ``out``.

    ``out`` has shape ``(d1 - d0, y1 - y0, x)``. Only the bytes of the strips or
    tiles that cover the region are read and decoded; uncompressed contiguous
    pages are read row range by row range without decoding.
    """
    key = page.keyframe
    depth, ny, nx = key.imagedepth, key.imagelength, key.imagewidth
    offsets, counts = page.dataoffsets, page.databytecounts
    itemsize = out.dtype.itemsize
    file_dtype = out.dtype.newbyteorder(byteorder)

    contiguous = (
        key.is_final
        and (not key.is_tiled or (key.tiledepth <= 1 and key.tilewidth == nx))
        and all(o + c == o2 for o, c, o2 in zip(offsets, counts, offsets[1:]))
        and sum(counts) >= depth * ny * nx * itemsize
    )
    if contiguous:
        row = nx * itemsize
        for d in range(d0, d1):
            start = offsets[0] + (d * ny + y0) * row
            data = _read_exact(fh, lock, start, (y1 - y0) * row, path, f"rows [{y0}, {y1})")
            out[d - d0] = np.frombuffer(data, file_dtype).reshape(y1 - y0, nx)
        return

    if key.is_tiled:
        td = max(1, key.tiledepth)
        tl, tw = key.tilelength, key.tilewidth
        nr, nc = math.ceil(ny / tl), math.ceil(nx / tw)
        n_segments = math.ceil(depth / td) * nr * nc
        indices: Iterator[int] = (
            (a * nr + r) * nc + c
            for a in range(d0 // td, math.ceil(d1 / td))
            for r in range(y0 // tl, math.ceil(y1 / tl))
            for c in range(nc)
        )
        what = "tile"
    elif depth == 1:
        rps = key.rowsperstrip if 0 < key.rowsperstrip < ny else ny
        n_segments = math.ceil(ny / rps)
        indices = iter(range(y0 // rps, math.ceil(y1 / rps)))
        what = "strip"
    else:
        n_segments = -1
        indices = iter(())
        what = "segment"

    if n_segments != len(offsets):
        # A layout this reader does not slice (volumetric strips...): decode it all.
        logger.debug("%s: decoding a whole page to read rows [%d, %d)", path, y0, y1)
        try:
            with lock:
                full = page.asarray()
        except Exception as e:
            raise SourceError(f"{path}: cannot decode TIFF page ({e})") from e
        out[...] = full.reshape(depth, ny, nx)[d0:d1, y0:y1]
        return

    decodeargs: dict[str, Any] = {"_fullsize": key.is_tiled}
    if key.compression in _JPEG_COMPRESSIONS:
        decodeargs["jpegtables"] = page.jpegtables
        decodeargs["jpegheader"] = key.jpegheader
    decode = key.decode
    for i in indices:
        offset, count = offsets[i], counts[i]
        data = None
        if offset > 0 and count > 0:
            data = _read_exact(fh, lock, offset, count, path, f"{what} {i}")
        try:
            segment, (_, sd, sy, sx, _), seg_shape = decode(data, i, **decodeargs)
        except Exception as e:
            raise SourceError(f"{path}: cannot decode {what} {i} ({e})") from e
        a0, a1 = max(sd, d0), min(sd + seg_shape[0], d1)
        b0, b1 = max(sy, y0), min(sy + seg_shape[1], y1)
        c0, c1 = sx, min(sx + seg_shape[2], nx)
        if a0 >= a1 or b0 >= b1 or c0 >= c1:
            continue
        dest = out[a0 - d0 : a1 - d0, b0 - y0 : b1 - y0, c0:c1]
        if segment is None:
            dest[...] = 0
        else:
            dest[...] = segment[a0 - sd : a1 - sd, b0 - sy : b1 - sy, c0 - sx : c1 - sx, 0]


def _plane_page(tf: Any, path: str) -> Any:
    """The single 2D grayscale page of a stack plane file."""
    pages = tf.pages
    n = len(pages)
    if n != 1:
        raise SourceError(
            f"{path}: holds {n} pages; a TIFF stack needs one 2D plane per file "
            "(open a multi-page file on its own as a 3D TIFF)"
        )
    page = pages[0]
    separate, depth, _, _, contig = page.shaped
    if separate * contig != 1:
        raise SourceError(
            f"{path}: has {separate * contig} samples per pixel; expected one grayscale channel"
        )
    if depth != 1:
        raise SourceError(f"{path}: is a 3D page of depth {depth}; expected a 2D plane")
    if page.dtype is None:
        raise SourceError(f"{path}: pixel type of the TIFF is not supported")
    return page


class TiffStackSource(Source):
    """A stack of single-plane 2D TIFF files, one per z, in natural sort order.

    The first plane gives the (y, x) shape and the dtype; every plane read is
    checked against them, so a stray plane fails the read that touches it.
    """

    kind = "tiff-stack"

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.files = _stack_files(pattern)
        first = self.files[0]
        with _open_tiff(first) as tf:
            page = _plane_page(tf, first)
            ny, nx = int(page.imagelength), int(page.imagewidth)
            dtype = _check_dtype(page.dtype, first)
        if ny <= 0 or nx <= 0:
            raise SourceError(f"{first}: empty plane of shape (y, x) = ({ny}, {nx})")
        self.shape = (len(self.files), ny, nx)
        self.dtype = dtype
        logger.debug("opened %s", self.describe())

    def _detail(self) -> str:
        return f"{len(self.files)} files"

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        _, ny, nx = self.shape
        out = np.empty((z1 - z0, y1 - y0, nx), dtype=self.dtype)
        for z in range(z0, z1):
            path = self.files[z]
            with _open_tiff(path) as tf:
                page = _plane_page(tf, path)
                shape = (int(page.imagelength), int(page.imagewidth))
                if shape != (ny, nx):
                    raise SourceError(
                        f"{path}: plane z={z} has shape (y, x) = {shape}; expected "
                        f"({ny}, {nx}) like the first plane {self.files[0]}"
                    )
                if page.dtype.newbyteorder("=") != self.dtype:
                    raise SourceError(
                        f"{path}: plane z={z} has dtype {page.dtype.name}; expected "
                        f"{self.dtype.name} like the first plane {self.files[0]}"
                    )
                _read_page_region(
                    tf.filehandle, nullcontext(), page, tf.byteorder,
                    0, 1, y0, y1, out[z - z0 : z - z0 + 1], path,
                )
        return out


def _stack_files(pattern: str) -> list[str]:
    """Plane files of a folder or a glob, in natural sort order."""
    import natsort

    if os.path.isdir(pattern):
        names = [
            os.path.join(pattern, name)
            for name in os.listdir(pattern)
            if name.lower().endswith(_TIFF_EXTS)
        ]
        files = [p for p in names if os.path.isfile(p)]
        if not files:
            raise SourceError(f"{pattern}: folder holds no *.tif or *.tiff files")
    else:
        files = [p for p in glob.glob(pattern) if os.path.isfile(p)]
        if not files:
            raise SourceError(f"{pattern}: glob pattern matches no files")
    return list(natsort.natsorted(files, alg=natsort.ns.PATH))


def _declared_size(tf: Any) -> tuple[str, int] | None:
    """What a tifffile-written or ImageJ file says it holds, and its voxel count.

    Used to tell a truncated file (tifffile then quietly returns the pages it
    could read) from a file that really holds fewer pages.
    """
    try:
        if tf.is_shaped and tf.shaped_metadata:
            shape = tuple(int(n) for n in tf.shaped_metadata[0]["shape"])
            return f"shape {shape}", math.prod(shape)
        if tf.is_imagej and tf.imagej_metadata and "images" in tf.imagej_metadata:
            images = int(tf.imagej_metadata["images"])
            page = tf.pages.first
            return f"{images} ImageJ images", images * math.prod(page.shape)
    except Exception:  # malformed description: nothing declared
        logger.debug("%s: unreadable image description", tf.filehandle.path, exc_info=True)
    return None


class Tiff3DSource(Source):
    """One 3D TIFF file: a multi-page stack, one volumetric page, or an ImageJ
    hyperstack with a single channel (and a single time point, or a single z)."""

    kind = "tiff-3d"
    _TRANSIENT = ("_tf",)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        tf, self.shape, self.dtype, self._axes = self._probe()
        self._tf = tf
        logger.debug("opened %s", self.describe())

    def _detail(self) -> str:
        return f"axes {self._axes}"

    def _probe(self) -> tuple[Any, tuple[int, int, int], np.dtype, str]:
        path = self.path
        tf = _open_tiff(path)
        try:
            shape, dtype, axes = self._geometry(tf)
        except Exception:
            tf.close()
            raise
        return tf, shape, dtype, axes

    def _geometry(self, tf: Any) -> tuple[tuple[int, int, int], np.dtype, str]:
        path = self.path
        try:
            series = tf.series
        except Exception as e:
            raise SourceError(
                f"{path}: cannot parse the TIFF structure ({e}); the file may be truncated"
            ) from e
        if not series:
            raise SourceError(f"{path}: holds no image data")
        if len(series) > 1:
            shapes = ", ".join(f"{s.axes} {s.shape}" for s in series)
            raise SourceError(
                f"{path}: pages of differing shape (series: {shapes}); a 3D TIFF needs "
                "every page of the same shape"
            )
        s = series[0]
        axes, shape = s.axes, tuple(int(n) for n in s.shape)
        declared = _declared_size(tf)
        if declared is not None and declared[1] != math.prod(shape):
            raise SourceError(
                f"{path}: declares {declared[0]} but holds {len(tf.pages)} readable "
                f"page(s) of shape {tuple(s.keyframe.shape)}; the file may be truncated"
            )
        samples = shape[axes.index("S")] if "S" in axes else 1
        if samples > 1:
            raise SourceError(
                f"{path}: has {samples} samples per pixel (axes {axes}, shape {shape}); "
                "expected one grayscale channel"
            )
        if not axes.endswith("YX"):
            raise SourceError(f"{path}: unsupported axes {axes} (shape {shape}); expected ...YX")
        lead = [(a, n) for a, n in zip(axes[:-2], shape[:-2]) if n != 1]
        if not lead:
            raise SourceError(
                f"{path}: is a 2D image of shape (y, x) = {shape[-2:]}; expected a 3D "
                "TIFF (use a glob or a folder for a stack of 2D planes)"
            )
        if len(lead) > 1 or lead[0][0] in "CS":
            raise SourceError(
                f"{path}: has axes {axes} and shape {shape}; expected a single channel "
                "with one z axis (export one channel, one time point)"
            )
        dtype = _check_dtype(s.dtype, path)
        zyx = (lead[0][1], shape[-2], shape[-1])
        key = s.keyframe
        if s.dataoffset is None:
            if key.imagedepth > 1:
                if len(s.pages) != 1 or key.imagedepth != zyx[0]:
                    raise SourceError(f"{path}: unsupported volumetric layout (axes {axes})")
            elif len(s.pages) != zyx[0] or any(p is None for p in s.pages):
                raise SourceError(
                    f"{path}: expected {zyx[0]} pages of shape (y, x) = {zyx[1:]}, "
                    f"found {len(s.pages)}; the file may be truncated"
                )
        return zyx, dtype, axes

    def _handle(self) -> Any:
        self._forget_after_fork()
        if self._tf is None:
            tf, shape, dtype, _ = self._probe()
            try:
                self._check_reopened(shape, dtype)
            except SourceError:
                tf.close()
                raise
            self._tf = tf
        return self._tf

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        tf = self._handle()
        nz, ny, nx = self.shape
        out = np.empty((z1 - z0, y1 - y0, nx), dtype=self.dtype)
        s = tf.series[0]
        fh, lock = tf.filehandle, self._lock
        if s.dataoffset is not None:  # uncompressed, contiguous: read rows directly
            row = nx * self.dtype.itemsize
            file_dtype = self.dtype.newbyteorder(tf.byteorder)
            for z in range(z0, z1):
                start = s.dataoffset + (z * ny + y0) * row
                data = _read_exact(fh, lock, start, (y1 - y0) * row, self.path, f"plane {z}")
                out[z - z0] = np.frombuffer(data, file_dtype).reshape(y1 - y0, nx)
            return out
        if s.keyframe.imagedepth > 1:
            _read_page_region(fh, lock, s.pages[0], tf.byteorder, z0, z1, y0, y1, out, self.path)
            return out
        for z in range(z0, z1):
            page = s.pages[z]
            if tuple(page.shape) != (ny, nx):
                raise SourceError(
                    f"{self.path}: page {z} has shape {tuple(page.shape)}; expected ({ny}, {nx})"
                )
            _read_page_region(
                fh, lock, page, tf.byteorder, 0, 1, y0, y1, out[z - z0 : z - z0 + 1], self.path
            )
        return out


# ---------------------------------------------------------------------- HDF5
def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("install h5py to read HDF5 sources") from e
    return h5py


class HDF5Source(Source):
    """A dataset of an HDF5 file, read with h5py hyperslab selections."""

    kind = "hdf5"
    _TRANSIENT = ("_file", "_dataset")

    def __init__(self, path: str, key: str | None = None) -> None:
        super().__init__(path)
        self.key = key
        f, ds, self.key, self.shape, self.dtype, self._lead = self._probe()
        self._file, self._dataset = f, ds
        logger.debug("opened %s", self.describe())

    def describe(self) -> str:
        z, y, x = self.shape
        return (
            f"{self.kind} {self.path!r} dataset {self.key!r}: shape (z, y, x) = "
            f"({z}, {y}, {x}), dtype {self.dtype.name}"
        )

    def _probe(self) -> tuple[Any, Any, str, tuple[int, int, int], np.dtype, int]:
        h5py = _import_h5py()
        path = self.path
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such file")
        try:
            f = h5py.File(path, "r")
        except Exception as e:
            raise SourceError(f"{path}: not a readable HDF5 file ({e})") from e
        try:
            name, ds = self._find_dataset(h5py, f)
            where = f"{path}:{name}"
            zyx, lead = _volume_shape(ds.shape, where)
            dtype = _check_dtype(ds.dtype, where)
        except Exception:
            f.close()
            raise
        return f, ds, name, zyx, dtype, lead

    def _find_dataset(self, h5py: Any, f: Any) -> tuple[str, Any]:
        path, key = self.path, self.key
        found: list[tuple[str, Any]] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and _is_volume(obj.shape):
                found.append(("/" + name, obj))

        if key:
            try:
                obj = f[key]
            except (KeyError, ValueError):
                obj = None
            if isinstance(obj, h5py.Dataset):
                return obj.name, obj
            f.visititems(visit)
            listed = ", ".join(f"{n} {o.shape}" for n, o in found) or "none"
            problem = "is a group, not a dataset" if obj is not None else "does not exist"
            raise SourceError(f"{path}: {key!r} {problem}; 3D datasets in the file: {listed}")
        f.visititems(visit)
        if len(found) == 1:
            return found[0]
        if not found:
            others: list[str] = []
            f.visititems(
                lambda n, o: others.append(f"/{n} {o.shape}")
                if isinstance(o, h5py.Dataset) else None
            )
            raise SourceError(
                f"{path}: holds no 3D dataset (datasets: {', '.join(others) or 'none'})"
            )
        listed = ", ".join(f"{n} {o.shape}" for n, o in found)
        raise SourceError(
            f"{path}: holds {len(found)} 3D datasets ({listed}); name one as '{path}:/name'"
        )

    def _handle(self) -> Any:
        self._forget_after_fork()
        if self._dataset is None:
            f, ds, _, shape, dtype, _ = self._probe()
            try:
                self._check_reopened(shape, dtype)
            except SourceError:
                f.close()
                raise
            self._file, self._dataset = f, ds
        return self._dataset

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        ds = self._handle()
        out = np.empty((z1 - z0, y1 - y0, self.shape[2]), dtype=self.dtype)
        sel = (0,) * self._lead + (slice(z0, z1), slice(y0, y1), slice(None))
        try:
            ds.read_direct(out, source_sel=sel)
        except Exception as e:  # corrupt chunk, missing filter plugin...
            raise SourceError(f"{self.path}:{self.key}: cannot read {sel} ({e})") from e
        return out


# ---------------------------------------------------------------------- zarr
def _import_zarr() -> Any:
    try:
        import zarr
    except ImportError as e:
        raise ImportError(
            "install zarr>=3 (pip install 'blockfs_tasks[zarr]') to read zarr sources"
        ) from e
    return zarr


class ZarrSource(Source):
    """A zarr v2 or v3 array (or an array inside a group), via zarr-python 3."""

    kind = "zarr"
    _TRANSIENT = ("_array",)

    def __init__(self, path: str, key: str | None = None) -> None:
        super().__init__(path)
        self.key = key or None
        arr, self.key, self.shape, self.dtype, self._lead = self._probe()
        self._array = arr
        logger.debug("opened %s", self.describe())

    def _detail(self) -> str:
        return f"array {self.key!r}" if self.key else ""

    def _probe(self) -> tuple[Any, str | None, tuple[int, int, int], np.dtype, int]:
        zarr = _import_zarr()
        path, key = self.path, self.key
        if not os.path.isdir(path):
            raise SourceError(f"{path}: no such zarr store (folder)")
        try:
            node = zarr.open(path, mode="r")
        except Exception as e:
            raise SourceError(f"{path}: not a readable zarr array or group ({e})") from e
        if isinstance(node, zarr.Group):
            arrays = [
                (name, a) for name, a in node.members(max_depth=None)
                if isinstance(a, zarr.Array) and _is_volume(a.shape)
            ]
            listed = ", ".join(f"{n} {a.shape}" for n, a in arrays) or "none"
            if key:
                try:
                    node = node[key.strip("/")]
                except KeyError:
                    raise SourceError(
                        f"{path}: {key!r} does not exist; 3D arrays in the group: {listed}"
                    ) from None
                if isinstance(node, zarr.Group):
                    raise SourceError(
                        f"{path}: {key!r} is a group, not an array; 3D arrays in it: {listed}"
                    )
            elif len(arrays) == 1:
                key, node = arrays[0]
            else:
                raise SourceError(
                    f"{path}: is a zarr group with {len(arrays)} 3D arrays ({listed}); "
                    f"name one as '{path}:path/to/array'"
                )
        elif key:
            raise SourceError(f"{path}: is a zarr array, not a group; drop ':{key}'")
        where = f"{path}:{key}" if key else path
        zyx, lead = _volume_shape(node.shape, where)
        dtype = _check_dtype(node.dtype, where)
        return node, key, zyx, dtype, lead

    def _handle(self) -> Any:
        self._forget_after_fork()
        if self._array is None:
            arr, _, shape, dtype, _ = self._probe()
            self._check_reopened(shape, dtype)
            self._array = arr
        return self._array

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        arr = self._handle()
        sel = (0,) * self._lead + (slice(z0, z1), slice(y0, y1), slice(None))
        try:
            data = arr[sel]
        except Exception as e:  # corrupt or missing chunk files, codec errors
            raise SourceError(f"{self.path}: cannot read {sel} ({e})") from e
        return np.asarray(data)


# ----------------------------------------------------------------------- npy
class NpySource(Source):
    """A 3D ``.npy`` file, memory-mapped read-only."""

    kind = "npy"
    _TRANSIENT = ("_array",)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        arr, self.shape, self.dtype, self._lead = self._probe()
        self._array = arr
        logger.debug("opened %s", self.describe())

    def _probe(self) -> tuple[np.ndarray, tuple[int, int, int], np.dtype, int]:
        path = self.path
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such file")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # bad magic, truncated data, object arrays
            raise SourceError(f"{path}: not a readable .npy file ({e})") from e
        if not isinstance(arr, np.ndarray):
            raise SourceError(f"{path}: is not a .npy array file")
        zyx, lead = _volume_shape(arr.shape, path)
        dtype = _check_dtype(arr.dtype, path)
        return arr, zyx, dtype, lead

    def _handle(self) -> np.ndarray:
        self._forget_after_fork()
        if self._array is None:
            arr, shape, dtype, _ = self._probe()
            self._check_reopened(shape, dtype)
            self._array = arr
        return self._array

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        arr = self._handle()
        view = arr[(0,) * self._lead + (slice(z0, z1), slice(y0, y1))]
        try:
            return np.array(view, dtype=self.dtype, order="C")
        except OSError as e:  # the file shrank under the mapping (SIGBUS is not catchable)
            raise SourceError(f"{self.path}: cannot read planes [{z0}, {z1}) ({e})") from e


# ----------------------------------------------------------------- synthetic
class SyntheticSource(Source):
    """:class:`blockfs_tasks.synthetic.SyntheticVolume` as a source."""

    kind = "synthetic"

    def __init__(self, spec: str, shape_zyx: tuple[int, int, int], dtype: str, seed: int) -> None:
        from .synthetic import SyntheticVolume

        super().__init__(spec)
        try:
            self.volume = SyntheticVolume(shape_zyx, dtype=dtype, seed=seed)
        except ValueError as e:
            raise SourceError(f"{spec}: {e}") from e
        self.shape = self.volume.shape_zyx
        self.dtype = np.dtype(self.volume.dtype)

    def _detail(self) -> str:
        return f"seed {self.volume.seed}"

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        _, ny, nx = self.shape
        if y0 == 0 and y1 == ny:
            return self.volume.slab(z0, z1)
        # Generate whole planes a few at a time so the working memory stays
        # within max(request, one plane), not (z1 - z0) whole planes.
        out = np.empty((z1 - z0, y1 - y0, nx), dtype=self.dtype)
        per_chunk = max(1, out.nbytes // (ny * nx * self.dtype.itemsize))
        for c0 in range(z0, z1, per_chunk):
            c1 = min(c0 + per_chunk, z1)
            out[c0 - z0 : c1 - z0] = self.volume.slab(c0, c1)[:, y0:y1]
        return out


def _parse_synthetic(spec: str) -> SyntheticSource:
    parts = spec[len(_SYNTHETIC_PREFIX):].split(":")
    m = _SYNTHETIC_SHAPE.match(parts[0].strip())
    if not m:
        raise SourceError(
            f"{spec}: expected 'synthetic:ZxYxX[:dtype][:seed=N]' with a shape like "
            f"64x256x256. Got {parts[0]!r} instead."
        )
    shape = (int(m[1]), int(m[2]), int(m[3]))
    dtype: str | None = None
    seed: int | None = None
    for part in parts[1:]:
        part = part.strip()
        if part.lower().startswith("seed="):
            if seed is not None:
                raise SourceError(f"{spec}: seed given twice")
            try:
                seed = int(part[5:])
            except ValueError:
                raise SourceError(
                    f"{spec}: expected seed=N with N a non-negative integer. Got {part!r} instead."
                ) from None
        elif dtype is None and part:
            dtype = part
        else:
            raise SourceError(
                f"{spec}: unexpected option {part!r}; expected ':dtype' and ':seed=N'"
            )
    return SyntheticSource(spec, shape, dtype or "uint16", 0 if seed is None else seed)


# -------------------------------------------------------------- entry points
def _is_zarr_dir(path: str) -> bool:
    return _ext(path) == ".zarr" or any(
        os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS
    )


def open_source(spec: str | os.PathLike[str] | Source) -> Source:
    """Open the source named by ``spec``; see the module docstring for the forms.

    Parameters
    ----------
    spec
        A source string or path; an already open :class:`Source` is returned as is.

    Raises
    ------
    SourceError
        If ``spec`` names no accepted form, or the data behind it is missing,
        unreadable, not 3D, empty, or of a dtype blockfs cannot store.
    """
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise SourceError(
            f"Expected a source string or path. Got {type(spec).__name__} {spec!r} instead."
        )
    text = os.fspath(spec)
    if not text.strip():
        raise SourceError(f"empty source string; accepted forms: {ACCEPTED_FORMS}")
    if text.lower().startswith(_SYNTHETIC_PREFIX):
        return _parse_synthetic(text)
    path = os.path.expanduser(text)
    ext = _ext(path)

    if os.path.isdir(path):
        if _is_zarr_dir(path):
            return ZarrSource(path.rstrip("/" + os.sep) or path)
        return TiffStackSource(path)
    if os.path.isfile(path):
        if ext in _TIFF_EXTS:
            return Tiff3DSource(path)
        if ext in _HDF5_EXTS:
            return HDF5Source(path)
        if ext == ".npy":
            return NpySource(path)
        raise SourceError(
            f"{path}: unknown kind of file (extension {ext or 'none'!r}); "
            f"accepted forms: {ACCEPTED_FORMS}"
        )
    m = _HDF5_KEY.match(path)
    if m:
        return HDF5Source(m["path"], m["key"] or None)
    m = _ZARR_KEY.match(path)
    if m:
        return ZarrSource(m["path"], m["key"] or None)
    if glob.has_magic(path):
        return TiffStackSource(path)
    if ext in (*_TIFF_EXTS, *_HDF5_EXTS, ".npy", ".zarr"):
        raise SourceError(f"{path}: no such file")
    raise SourceError(
        f"{text!r}: no such file, and not a source string; accepted forms: {ACCEPTED_FORMS}"
    )


def check_extent(src: Source, expected_shape_zyx: Sequence[int | None]) -> None:
    """Raise SourceError if ``src`` disagrees with extents the user declared.

    Parameters
    ----------
    src
        An open source.
    expected_shape_zyx
        Declared ``(z, y, x)`` extents; ``None`` leaves an axis unchecked.
    """
    if isinstance(expected_shape_zyx, (str, bytes)) or len(expected_shape_zyx) != 3:
        raise SourceError(
            f"Expected declared extents (z, y, x) of length 3. Got {expected_shape_zyx!r} instead."
        )
    expected = tuple(
        None if n is None else _as_index(n, f"declared extent {axis}")
        for axis, n in zip("zyx", expected_shape_zyx)
    )
    bad = [
        f"{axis} = {have} (declared {want})"
        for axis, have, want in zip("zyx", src.shape, expected)
        if want is not None and have != want
    ]
    if bad:
        raise SourceError(
            f"{src.path}: extents disagree with the declared (z, y, x) = {expected}: "
            f"the source has {', '.join(bad)}"
        )
