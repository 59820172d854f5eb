"""TIFF sources: a stack of 2D planes (``tiff-stack``) and one 3D file (``tiff-3d``).

Reads decode only the strips or tiles covering the requested rows; plain
uncompressed pages are read row range by row range without decoding.
"""

from __future__ import annotations

import glob
import io
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ...core.optional import require
from ..errors import SourceError
from .base import Source, check_dtype
from .tiff_headers import HeaderRecord, ReadLog

logger = logging.getLogger(__name__)

TIFF_EXTS = (".tif", ".tiff")

#: A TIFF file's byte order, as ``TiffFile.byteorder`` spells it.
ByteOrder = Literal["<", ">"]

# TIFF compressions whose decoder needs the JPEG tables (as TiffPage.segments does).
_JPEG_COMPRESSIONS = frozenset({6, 7, 34892, 33007})


def _open_tiff(path: str, fh: io.FileIO | ReadLog | None = None) -> Any:
    """Open a TIFF file (``fh``: already open on ``path``); every failure becomes a SourceError naming it."""
    tifffile = require("tifffile", extra=None, purpose="Reading a TIFF source")
    try:
        if fh is not None:
            fh.seek(0)  # tifffile takes a stream's position for the start of the TIFF
        return tifffile.TiffFile(path if fh is None else fh)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except Exception as e:  # TiffFileError, OSError, struct errors on garbage
        raise SourceError(f"{path}: not a readable TIFF file ({e})") from e


def _read_exact(fh: Any, lock: AbstractContextManager[Any], offset: int, size: int,
                path: str, what: str) -> bytes:
    with lock:
        fh.seek(offset)
        data: bytes = fh.read(size)
    if len(data) != size:
        raise SourceError(
            f"{path}: truncated file: {what} at byte {offset} needs {size} bytes, "
            f"found {len(data)}"
        )
    return data


def _contiguous_offset(page: Any, itemsize: int) -> int | None:
    """Where the pixels of ``page`` start if they are stored uncompressed, in order, without gaps; else None."""
    key = page.keyframe
    depth, ny, nx = key.imagedepth, key.imagelength, key.imagewidth
    offsets, counts = page.dataoffsets, page.databytecounts
    contiguous = (
        key.is_final
        and (not key.is_tiled or (key.tiledepth <= 1 and key.tilewidth == nx))
        and all(o + c == o2 for o, c, o2 in zip(offsets, counts, offsets[1:], strict=False))
        and sum(counts) >= depth * ny * nx * itemsize
    )
    return int(offsets[0]) if contiguous and len(offsets) else None


def _read_page_region(
    fh: Any,
    lock: AbstractContextManager[Any],
    page: Any,
    byteorder: ByteOrder,
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

    if _contiguous_offset(page, itemsize) is not None:
        row = nx * itemsize
        for d in range(d0, d1):
            start = offsets[0] + (d * ny + y0) * row
            with lock:
                _read_into(fh, start, out[d - d0], path, f"rows [{y0}, {y1})")
        _to_native(out, byteorder)
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
        encoded = _read_exact(fh, lock, offset, count, path, f"{what} {i}") if offset > 0 and count > 0 else None
        try:
            segment, (_, sd, sy, sx, _), seg_shape = decode(encoded, i, **decodeargs)
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


#: What identifies one version of a file: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns).
Stamp = tuple[int, int, int, int, int]


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class _PlaneLayout:
    """Where a plane file keeps its pixels, parsed from its header and checked against the stack.

    Valid while the file's :data:`Stamp` is ``stamp``: a file rewritten,
    replaced or touched since is parsed (and checked) again.
    """

    stamp: Stamp
    #: Byte offset of the first row when the pixels are stored uncompressed, in order and
    #: without gaps (read with one positioned read per row range); None: read through tifffile.
    offset: int | None
    byteorder: ByteOrder
    #: Where the image data ends (beyond the file's size: a truncated plane).
    end: int


@dataclass(frozen=True)
class _Reference:
    """The first plane parsed: what tifffile read of it, and its layout."""

    header: HeaderRecord
    layout: _PlaneLayout


class TiffStackSource(Source):
    """A stack of single-plane 2D TIFF files, one per z, in natural sort order.

    The first plane gives the (y, x) shape and the dtype; every plane read is
    checked against them, so a stray plane fails the read that touches it.
    A plane's header is examined once per source (by :meth:`check` or its
    first read) while the file is unchanged (same inode, size, mtime and
    ctime): rows of an uncompressed plane are then read straight into the
    returned array with one positioned read. A plane whose size and bytes
    equal the first parsed plane's wherever tifffile read that one is known
    to parse the same way and is not parsed again (see :mod:`.tiff_headers`).
    """

    kind = "tiff-stack"

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.files = _stack_files(pattern)
        self._layouts: dict[int, _PlaneLayout] = {}
        self._reference: _Reference | None = None
        first = self.files[0]
        with _open_tiff(first) as tf:
            page = _plane_page(tf, first)
            ny, nx = int(page.imagelength), int(page.imagewidth)
            dtype = check_dtype(page.dtype, first)
        if ny <= 0 or nx <= 0:
            raise SourceError(f"{first}: empty plane of shape (y, x) = ({ny}, {nx})")
        self.shape = (len(self.files), ny, nx)
        self.dtype = dtype
        logger.debug("opened %s", self.describe())

    def _detail(self) -> str:
        return f"{len(self.files)} files"

    def check(self, n_threads: int = 8) -> None:
        """Read every plane's header: one 2D page of the first plane's shape and dtype, all its bytes present.

        Raises SourceError naming the first bad plane (in z order). One small
        read per file, ``n_threads`` files at a time (latency-bound on
        network filesystems). The layouts found are kept for later reads.
        """
        from ...core.parallel import bounded_map

        for _ in bounded_map(self._check_plane, range(len(self.files)), n_threads):
            pass

    def _matching_page(self, tf: Any, z: int) -> Any:
        """Plane ``z``'s page, checked to have the first plane's shape and dtype."""
        _, ny, nx = self.shape
        path = self.files[z]
        page = _plane_page(tf, path)
        shape = (int(page.imagelength), int(page.imagewidth))
        if shape != (ny, nx):
            raise SourceError(
                f"{path}: plane z={z} has shape (y, x) = {shape}; expected ({ny}, {nx}) "
                f"like the first plane {self.files[0]}"
            )
        if page.dtype.newbyteorder("=") != self.dtype:
            raise SourceError(
                f"{path}: plane z={z} has dtype {page.dtype.name}; expected {self.dtype.name} "
                f"like the first plane {self.files[0]}"
            )
        return page

    def _open_plane(self, z: int) -> io.FileIO:
        path = self.files[z]
        try:
            return io.FileIO(path, "r")
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file") from None
        except OSError as e:
            raise SourceError(f"{path}: cannot open the plane file ({e})") from e

    def _examine(self, z: int, fh: io.FileIO, stamp: Stamp) -> _PlaneLayout:
        """Plane ``z``'s layout (``fh``: the plane file, ``stamp``: its identity), checked against the stack.

        Parsed by tifffile and checked (one page, shape, dtype), unless the file
        has the first parsed plane's size and bytes wherever tifffile read that
        one: then tifffile would find the same, and its layout is taken.
        """
        ref = self._reference
        if ref is not None and ref.header.matches(fh, stamp[2]):
            layout = replace(ref.layout, stamp=stamp)
        else:
            log = ReadLog(fh)
            with _open_tiff(self.files[z], log) as tf:
                page = self._matching_page(tf, z)
                end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)), default=0)
                offset = _contiguous_offset(page, self.dtype.itemsize)
                layout = _PlaneLayout(stamp, offset, tf.byteorder, int(end))
            if ref is None and log.complete:
                self._reference = _Reference(log.record(stamp[2]), layout)
        self._layouts[z] = layout
        return layout

    def _check_plane(self, z: int) -> None:
        path = self.files[z]
        with self._open_plane(z) as fh:
            stamp = _stamp(os.fstat(fh.fileno()))
            layout = self._examine(z, fh, stamp)
        if layout.end > stamp[2]:
            self._layouts.pop(z, None)
            raise SourceError(
                f"{path}: plane z={z} is truncated: its image data ends at byte {layout.end}, "
                f"the file has {stamp[2]} bytes"
            )

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        nx = self.shape[2]
        out = np.empty((z1 - z0, y1 - y0, nx), dtype=self.dtype)
        for z in range(z0, z1):
            self._read_plane(z, y0, y1, out[z - z0])
        return out

    def _read_plane(self, z: int, y0: int, y1: int, out: np.ndarray) -> None:
        """Rows ``[y0, y1)`` of plane ``z`` into ``out``, a C-contiguous ``(y1 - y0, x)`` array."""
        path = self.files[z]
        with self._open_plane(z) as fh:
            stamp = _stamp(os.fstat(fh.fileno()))
            layout = self._layouts.get(z)
            if layout is None or layout.stamp != stamp:  # first read, or the file changed
                layout = self._examine(z, fh, stamp)
            if layout.offset is None:  # compressed, tiled or scattered: decode the strips or tiles of the rows
                with _open_tiff(path, fh) as tf:
                    page = self._matching_page(tf, z)
                    _read_page_region(
                        tf.filehandle, nullcontext(), page, tf.byteorder, 0, 1, y0, y1, out[np.newaxis], path
                    )
                return
            row = out.shape[1] * out.itemsize
            _read_into(fh, layout.offset + y0 * row, out, path, f"rows [{y0}, {y1})")
        _to_native(out, layout.byteorder)


_NATIVE: ByteOrder = "<" if sys.byteorder == "little" else ">"


def _to_native(out: np.ndarray, byteorder: ByteOrder) -> None:
    """Swap in place the bytes of ``out``, read raw from a file of ``byteorder``, if that is not the machine's."""
    if out.itemsize > 1 and byteorder != _NATIVE:
        out.byteswap(inplace=True)


def _read_into(fh: Any, offset: int, out: np.ndarray, path: str, what: str) -> None:
    """Fill the C-contiguous ``out`` with the bytes of the binary file ``fh`` from ``offset`` (no intermediate copy)."""
    view = out.data.cast("B")  # raises TypeError unless C-contiguous: never a copy
    size, done = len(view), 0
    fh.seek(offset)
    while done < size:
        n = fh.readinto(view[done:])
        if not n:
            raise SourceError(
                f"{path}: truncated file: {what} at byte {offset} needs {size} bytes, found {done}"
            )
        done += n


def _stack_files(pattern: str) -> list[str]:
    """Plane files of a folder or a glob, in natural sort order."""
    if os.path.isdir(pattern):
        names = [
            os.path.join(pattern, name)
            for name in os.listdir(pattern)
            if name.lower().endswith(TIFF_EXTS)
        ]
        files = [p for p in names if os.path.isfile(p)]
        if not files:
            raise SourceError(f"{pattern}: folder holds no *.tif or *.tiff files")
    else:
        files = [p for p in glob.glob(pattern) if os.path.isfile(p)]
        if not files:
            raise SourceError(f"{pattern}: glob pattern matches no files")
    return list(natural_order(tuple(files)))


def natural_order(files: tuple[str, ...]) -> tuple[str, ...]:
    """``files`` in natsort's ``ns.PATH`` order (ties keep their given order).

    A run sorts once: the batch tasks share the planner's open source
    (``WriteBlockBatch.share_source``). When all files share one folder,
    their base names are sorted instead: natsort compares paths component by
    component, so identical folder components leave the base names to
    decide, in the same order, at half the cost.
    """
    import natsort

    if len({os.path.dirname(f) for f in files}) == 1:
        order = natsort.index_natsorted([os.path.basename(f) for f in files], alg=natsort.ns.PATH)
        return tuple(files[i] for i in order)
    return tuple(natsort.natsorted(files, alg=natsort.ns.PATH))


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
        lead = [(a, n) for a, n in zip(axes[:-2], shape[:-2], strict=True) if n != 1]
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
        dtype = check_dtype(s.dtype, path)
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
        if s.dataoffset is not None:  # uncompressed, contiguous: read rows straight into the array
            row = nx * self.dtype.itemsize
            for z in range(z0, z1):
                start = s.dataoffset + (z * ny + y0) * row
                with lock:
                    _read_into(fh, start, out[z - z0], self.path, f"plane {z}")
            _to_native(out, tf.byteorder)
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
