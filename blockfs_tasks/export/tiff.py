"""Export planes of a blockfs volume as one 2D TIFF per plane, with bounded memory.

Plane ``z`` goes to ``pattern % z``; deflate ("zlib", TIFF compression 8) at
level 1-9, or uncompressed at level 0; BigTIFF when an uncompressed plane would
not fit in a classic TIFF (> 4 GiB - 32 MiB, tifffile's own rule). Each file is
published atomically, so a file at a plane's path is complete; see
:mod:`blockfs_tasks.export.planes` for the ``existing`` rule.

How memory stays bounded however wide the plane
-----------------------------------------------
A *group* of up to one block depth of planes is exported together, in *bands*
of block rows: a band (group planes x band rows x every column) is decoded from
the blocks once, cut into strips of ``rows_per_strip`` rows, and the strips are
deflated by ``n_threads`` threads and handed to one writer thread per plane,
which streams them into ``tifffile.imwrite`` as pre-encoded strips. So no whole
plane is ever in memory: at most two bands (the one being encoded and the next
one, read ahead), a few encoded strips per plane and one decoded block per
reading thread. :func:`plan_tiff` picks the group size and the band height that
fit ``memory_budget``, preferring a whole block depth of planes (each block is
then decoded exactly once) and bands of at most ~32 MiB.

Each file is fsynced before it is renamed into place; while one group's
writers publish, the next group's bands are already read and encoded, so the
disk's flush latency does not stall the encoders.

Threads are enough for parallelism: Blosc decoding, deflate (libdeflate via
imagecodecs, as tifffile itself uses) and file writes all release the GIL.
"""

from __future__ import annotations

import logging
import math
import queue
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import Directory
from ..core.atomic import published
from ..core.checks import check_level
from ..core.errors import ConfigurationError
from ..core.optional import require
from ..core.parallel import bounded_map
from .planes import (
    DEFAULT_MEMORY_BUDGET,
    Progress,
    VolumeLike,
    check_pattern,
    contiguous_groups,
    default_threads,
    open_volume,
    planes_to_write,
    read_region,
    resolve_z_range,
)

logger = logging.getLogger(__name__)

#: Largest uncompressed plane written as classic TIFF (tifffile's rule for imwrite).
CLASSIC_TIFF_LIMIT = 2**32 - 2**25

#: Target size of one uncompressed strip, in bytes.
STRIP_TARGET = 256 * 1024

#: Largest band (group planes x band rows x columns) worth reading at once, in bytes.
BAND_TARGET = 32 * 1024 * 1024

#: Encoded strips waiting per plane writer.
QUEUE_DEPTH = 2

#: Allowance per open TIFF writer (tag buffers, strip tables), in bytes.
WRITER_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class TiffPlan:
    """How an export is cut up so that it fits a memory budget.

    Attributes
    ----------
    group_planes
        Planes exported together (read from the same blocks), at most one block depth.
    band_rows
        Rows of a band: a multiple of the block height, or the plane's height.
    rows_per_strip
        TIFF RowsPerStrip; divides the band height so bands hold whole strips.
    bigtiff
        Write BigTIFF (a plane would not fit in a classic TIFF).
    peak_bytes
        Estimated peak memory of plane data, in bytes.
    """

    group_planes: int
    band_rows: int
    rows_per_strip: int
    bigtiff: bool
    peak_bytes: int


def plan_tiff(
    shape_zyx: tuple[int, int, int],
    block_zyx: tuple[int, int, int],
    itemsize: int,
    n_threads: int,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> TiffPlan:
    """Choose group size, band height and strip height for a volume and a memory budget.

    Raises :class:`ConfigurationError` when even one plane in bands of one block
    row does not fit ``memory_budget`` (the message gives the minimum).
    """
    nz, ny, nx = shape_zyx
    bz, by, bx = block_zyx
    row_bytes = nx * itemsize
    block_bytes = bz * by * bx * itemsize

    def strip_rows(band_rows: int) -> int:
        """Strips divide the band height, so bands hold whole strips (the plane's last one may be short)."""
        fits = (d for d in range(1, band_rows + 1) if band_rows % d == 0 and d * row_bytes <= STRIP_TARGET)
        return max(fits, default=1)

    def peak(group: int, band_rows: int) -> int:
        strip_bytes = strip_rows(band_rows) * row_bytes
        strip_bytes += strip_bytes // 1000 + 64  # deflate may grow a strip a little
        bands = 2 * group * band_rows * row_bytes
        # strips being encoded, and queued for two groups' writers (one streaming, one publishing)
        strips = (2 * n_threads + 2 * group * (QUEUE_DEPTH + 1)) * strip_bytes
        blocks = 2 * n_threads * 2 * block_bytes  # two bands may be read at once, each block + its bytes
        return bands + strips + blocks + 2 * group * WRITER_OVERHEAD

    group = min(bz, nz)
    first_band = min(by, ny)
    while group > 1 and peak(group, first_band) > memory_budget:
        group -= 1
    if peak(group, first_band) > memory_budget:
        raise ConfigurationError(
            f"memory_budget={memory_budget} bytes is below the {peak(1, first_band)} bytes needed to "
            f"export {ny}x{nx} planes of {itemsize}-byte voxels in bands of one {by}-row block row "
            f"with {n_threads} threads; raise memory_budget or lower n_threads"
        )
    band = first_band
    while band < ny:
        bigger = min(band + by, ny)
        if peak(group, bigger) > memory_budget or group * bigger * row_bytes > BAND_TARGET:
            break
        band = bigger
    rows = strip_rows(band)
    return TiffPlan(group, band, rows, ny * row_bytes > CLASSIC_TIFF_LIMIT, peak(group, band))


def strip_encoder(level: int) -> Callable[[np.ndarray], bytes]:
    """Encode a C-contiguous strip as TIFF stores it: raw bytes (level 0) or a zlib stream."""
    if level == 0:
        return lambda strip: strip.tobytes()
    try:
        from imagecodecs import deflate_encode  # libdeflate: what tifffile itself uses
    except ImportError:  # pragma: no cover - imagecodecs is a dependency
        return lambda strip: zlib.compress(strip.data, level)
    # an ndarray is a buffer, which deflate_encode takes; its stubs name only bytes, bytearray and mmap
    return lambda strip: bytes(deflate_encode(strip, level))  # type: ignore[arg-type]


def export_tiff(
    volume: VolumeLike,
    pattern: str,
    z0: int = 0,
    z1: int | None = None,
    *,
    level: int = 3,
    n_threads: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    existing: str = "replace",
    progress: Progress | None = None,
) -> list[str]:
    """Write planes ``[z0, z1)`` of ``volume`` as 2D TIFF files ``pattern % z``.

    Parameters
    ----------
    volume
        A :class:`Directory` or the path of its directory file.
    pattern
        Output path with one ``%d``-style field, e.g. ``"/out/img_%04d.tiff"``;
        missing folders are created.
    z0, z1
        Planes to export, ``[z0, z1)``; ``z1=None`` means to the last plane.
    level
        Deflate level 1-9 (TIFF "zlib"/Adobe deflate); 0 writes uncompressed strips.
        (``blockfs2tif --compression`` and ``ExportTiff --compression`` set it.)
    n_threads
        Threads decoding blocks and encoding strips (default: one per core).
    memory_budget
        Upper bound, in bytes, for plane data in memory (see :func:`plan_tiff`).
    existing
        What to do with outputs that exist: ``"replace"`` (default), ``"skip"``
        or ``"error"`` (see :mod:`blockfs_tasks.export.planes`).
    progress
        Called as ``progress(done, total)`` in *plane rows* (``total`` = planes
        to write x rows per plane): after each band of block rows is encoded
        and handed to the plane writers, and when planes are published. The
        rows of a plane's last band count only once its file is published, so
        ``done == total`` means every file is in place. Not called when no
        plane needs writing.

    Returns
    -------
    list of str
        The paths of planes ``[z0, z1)``, in z order (written or skipped).
    """
    directory = open_volume(volume)
    pattern = check_pattern(pattern)
    z0, z1 = resolve_z_range(directory, z0, z1)
    level = check_level(level)
    threads = default_threads(n_threads)
    plan = plan_tiff(directory.shape, directory.grid.block_shape, directory.dtype.itemsize, threads, memory_budget)
    planes = planes_to_write(pattern, z0, z1, existing)
    logger.debug("%s -> %s planes [%d, %d): %d to write, %s", directory.directory_filename, pattern, z0, z1,
                 len(planes), plan)
    groups = contiguous_groups(planes, directory.grid.block_shape[0], plan.group_planes)
    tifffile = require("tifffile", None, "TIFF export")
    _stream(tifffile, directory, pattern, groups, plan, level, threads, progress)
    return [pattern % z for z in range(z0, z1)]


# ------------------------------------------------------------ streaming planes
class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_END = _Sentinel("END")  # every strip was sent: publish the file
_ABORT = _Sentinel("ABORT")  # the export failed: discard the file


class ExportAborted(Exception):
    """Raised inside a plane writer when the export stops before the plane is whole."""


class _StripQueue:
    """The strips of one plane, from the encoding threads to that plane's writer thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.ended = False

    def get(self) -> Any:
        item = self.queue.get()
        if isinstance(item, _Sentinel):
            self.ended = True
        return item

    def strips(self, n: int, path: str) -> Any:
        """Yield ``n`` encoded strips; raise ExportAborted if the producer gives up first."""
        for _ in range(n):
            item = self.get()
            if isinstance(item, _Sentinel):
                raise ExportAborted(f"{path}: export stopped after part of the plane was written")
            yield item

    def drain(self) -> None:
        """Discard strips until the producer's sentinel, so a producer never blocks on a dead writer."""
        while not self.ended:
            self.get()


def _write_plane(
    tifffile: Any, path: str, strips: _StripQueue, n_strips: int, shape: tuple[int, int], dtype: np.dtype,
    level: int, plan: TiffPlan,
) -> str:
    """Stream one plane's strips into a temporary TIFF; publish it when the producer says END."""
    try:
        with published(path) as tmp:
            tifffile.imwrite(
                tmp,
                data=strips.strips(n_strips, path),
                shape=shape,
                dtype=dtype,
                compression="zlib" if level else None,
                rowsperstrip=plan.rows_per_strip,
                bigtiff=plan.bigtiff,
                photometric="minisblack",
                metadata=None,
            )
            if strips.get() is not _END:
                raise ExportAborted(f"{path}: export stopped before the plane was published")
    except BaseException:
        strips.drain()
        raise
    return path


class _PlaneGroup:
    """Planes ``[za, zb)`` being written: one writer thread and one strip queue per plane."""

    def __init__(
        self, tifffile: Any, directory: Directory, pattern: str, za: int, zb: int, level: int, plan: TiffPlan
    ) -> None:
        _, ny, nx = directory.shape
        self.span = (za, zb)
        self.queues = [_StripQueue() for _ in range(za, zb)]
        self.ended = False
        self.pool = ThreadPoolExecutor(zb - za, thread_name_prefix="blockfs-tiff-writer")
        n_strips = math.ceil(ny / plan.rows_per_strip)
        self.futures: list[Future[str]] = [
            self.pool.submit(_write_plane, tifffile, pattern % z, q, n_strips, (ny, nx), directory.dtype, level, plan)
            for z, q in zip(range(za, zb), self.queues, strict=True)
        ]

    def send_band(
        self, data: np.ndarray, y0: int, y1: int, rows: int, encode: Callable[[np.ndarray], bytes], n_threads: int
    ) -> None:
        """Encode a band's strips with ``n_threads`` threads and hand them, in order, to the writers."""
        # Row-major over the planes: consecutive strips go to different writers, so a full queue rarely
        # blocks the hand-off (and with it the encoders) while its writer thread waits to be scheduled.
        strips = [(i, y) for y in range(y0, y1, rows) for i in range(len(self.queues))]

        def encode_strip(item: tuple[int, int]) -> bytes:
            i, y = item
            return encode(data[i, y - y0 : min(y + rows, y1) - y0])

        for (i, _), encoded in zip(strips, bounded_map(encode_strip, strips, n_threads), strict=True):
            self.queues[i].queue.put(encoded)
        for future in self.futures:  # a writer that failed (disk full...) stops the export
            error = future.exception() if future.done() else None
            if error is not None:
                raise error

    def end(self) -> None:
        """Every strip was sent: the writers finish and publish their files."""
        for q in self.queues:
            q.queue.put(_END)
        self.ended = True

    def wait(self) -> int:
        """Wait until every plane is published (or raise a writer's error); return the plane count."""
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(wait=True)
        return len(self.futures)

    def abort(self) -> None:
        """Stop: writers not yet told END discard their temporary files; wait for every writer."""
        if not self.ended:
            for q in self.queues:
                q.queue.put(_ABORT)
            self.ended = True
        self.pool.shutdown(wait=True)


def _stream(
    tifffile: Any, directory: Directory, pattern: str, groups: list[tuple[int, int]], plan: TiffPlan,
    level: int, n_threads: int, progress: Progress | None,
) -> None:
    """Export ``groups`` of planes band by band, reading ahead across groups.

    One group is streamed while the group before it may still be publishing
    (fsync + rename), so the next bands are read and encoded meanwhile.
    """
    ny = directory.shape[1]
    encode = strip_encoder(level)
    bands = [(za, zb, y, min(y + plan.band_rows, ny)) for za, zb in groups for y in range(0, ny, plan.band_rows)]
    rows = _RowProgress(sum(zb - za for za, zb in groups) * ny, progress)
    last_band_rows = ny - (ny - 1) // plan.band_rows * plan.band_rows if ny else 0

    def read(band: tuple[int, int, int, int]) -> np.ndarray:
        za, zb, y0, y1 = band
        return read_region(directory, za, zb, y0, y1, n_threads)

    read_ahead = 2 if n_threads > 1 else 1
    live: deque[_PlaneGroup] = deque()  # the group being streamed last; before it, at most one publishing
    try:
        reads = bounded_map(read, bands, read_ahead, max_in_flight=read_ahead)
        for (za, zb, y0, y1), data in zip(bands, reads, strict=True):
            if not live or live[-1].span != (za, zb):
                if live:
                    live[-1].end()
                while len(live) > 1:
                    _finished(live.popleft(), rows, last_band_rows)
                live.append(_PlaneGroup(tifffile, directory, pattern, za, zb, level, plan))
            live[-1].send_band(data, y0, y1, plan.rows_per_strip, encode, n_threads)
            del data
            if y1 < ny:  # the last band of a group counts when its files are published
                rows.add((zb - za) * (y1 - y0))
        if live:
            live[-1].end()
        while live:
            _finished(live.popleft(), rows, last_band_rows)
    except BaseException:
        for group in live:
            group.abort()
        raise


class _RowProgress:
    """Counts plane rows done and reports ``(done, total)`` to a Progress callback."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _finished(group: _PlaneGroup, rows: _RowProgress, last_band_rows: int) -> None:
    """Wait for a group's files; count the rows of its last band, now published."""
    n = group.wait()
    logger.debug("published planes [%d, %d)", *group.span)
    rows.add(n * last_band_rows)


__all__ = ["ExportAborted", "TiffPlan", "export_tiff", "plan_tiff", "strip_encoder"]
