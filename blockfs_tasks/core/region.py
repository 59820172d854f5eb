"""Region reads: a numpy-style (z, y, x) key turned into the blocks it touches, read in parallel.

:meth:`~.directory.Directory.__getitem__` is a thin caller: it gives the
index lookup and the block read, this module plans the region and pastes
each block's overlap into the output. A region of many blocks is read in
file-offset order, adjacent frames in one read (:mod:`.read_plan`), given a
:class:`RangeReader` to read and decode with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np

from .codec import BlockCodec, Codec
from .errors import OutOfBoundsError
from .grid import XYZ, ZYX, BlockGrid
from .read_plan import MIN_BLOCKS, Frame, frames_of_runs, plan_runs


class RangeReader(Protocol):
    """What planned reads need of a volume's local block files (a :class:`~.blockfile.BlockFileReader`)."""

    def fd(self, i: int) -> int: ...

    def read_range(self, i: int, offset: int, size: int) -> bytes: ...

    def decode(
        self, data: bytes, entry: np.void, dtype: np.dtype, shape: ZYX, where: str,
        out: np.ndarray | None = ..., codec: Codec | None = ...,
    ) -> np.ndarray: ...


# (start, stop, step) of one axis; a region is three of them in (z, y, x) order.
AxisRange = tuple[int, int, int]


def normalize_key(key: Any, shape: ZYX) -> tuple[list[AxisRange], tuple[int | slice, ...]]:
    """Turn a numpy-style (z, y, x) key into (start, stop, step) per axis, and the squeeze to apply after."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
    if len(key) > 3:
        raise OutOfBoundsError(f"too many indices for a 3-D volume: {len(key)}")
    key = key + (slice(None),) * (3 - len(key))
    out: list[AxisRange] = []
    squeeze: list[int | slice] = []
    for axis, (k, n) in enumerate(zip(key, shape, strict=True)):
        if isinstance(k, (int, np.integer)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise OutOfBoundsError(f"index {k} is out of bounds for axis {'zyx'[axis]} of size {n}")
            out.append((i, i + 1, 1))
            squeeze.append(0)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step < 1:
                raise OutOfBoundsError("negative or zero steps are not supported in volume reads")
            out.append((start, max(stop, start), step))
            squeeze.append(slice(None))
        else:
            raise OutOfBoundsError(f"unsupported index {k!r}: use integers and slices")
    return out, (tuple(squeeze) if 0 in squeeze else ())


def read_region(
    slices: list[AxisRange],
    squeeze: tuple[int | slice, ...],
    grid: BlockGrid,
    dtype: np.dtype,
    entry_of: Callable[[XYZ], np.void],
    read_into: Callable[[np.void, XYZ, np.ndarray], np.ndarray],
    pool: Callable[[], Executor],
    ranges: Callable[[], RangeReader | None] | None = None,
    codec: Codec | None = None,
) -> np.ndarray:
    """Read the region ``slices`` (from :func:`normalize_key`) of a volume.

    ``entry_of(origin)`` gives a block's index entry (file 0 = absent, left as
    zeros); ``read_into(entry, origin, buffer)`` decodes it into a reusable
    buffer; ``pool()`` gives the threads used when more than one block is read.
    ``ranges()``, when given and not None, reads regions of at least
    :data:`~.read_plan.MIN_BLOCKS` blocks in runs of adjacent frames instead,
    decoding with ``codec`` (the volume's).
    """
    (z0, z1, zs), (y0, y1, ys), (x0, x1, xs) = slices
    box = (max(z1, z0), max(y1, y0), max(x1, x0))
    out = np.zeros((box[0] - z0, box[1] - y0, box[2] - x0), dtype)
    entries = {
        o: e for o in (grid.origins_in_region(z0, box[0], y0, box[1], x0, box[2]) if out.size else ())
        if (e := entry_of(o))["file"]  # absent blocks are zeros already
    }
    origins = list(entries)
    buffers = threading.local()  # one decode buffer per thread and block shape

    def buffer(origin: XYZ) -> np.ndarray:
        shape = grid.block_shape_at(*origin)
        cache = buffers.__dict__.setdefault("by_shape", {})
        if shape not in cache:
            cache[shape] = np.empty(shape, dtype)
        return cache[shape]  # type: ignore[no-any-return]  # the cache holds arrays only

    def paste(origin: XYZ, block: np.ndarray) -> None:
        bx, by, bz = origin
        sz, sy, sx = block.shape
        zz = slice(max(z0, bz), min(box[0], bz + sz))
        yy = slice(max(y0, by), min(box[1], by + sy))
        xx = slice(max(x0, bx), min(box[2], bx + sx))
        out[zz.start - z0 : zz.stop - z0, yy.start - y0 : yy.stop - y0, xx.start - x0 : xx.stop - x0] = block[
            zz.start - bz : zz.stop - bz, yy.start - by : yy.stop - by, xx.start - bx : xx.stop - bx
        ]

    def fill(origin: XYZ) -> None:
        paste(origin, read_into(entries[origin], origin, buffer(origin)))

    reader = ranges() if ranges is not None and len(origins) >= MIN_BLOCKS else None
    if reader is not None:
        frames = [Frame(o, int(e["file"]) - 1, int(e["offset"]), int(e["size"])) for o, e in entries.items()]
        runs = plan_runs(frames)
        job = frames_of_runs(runs, reader.read_range, reader.fd)

        def fill_run(k: int) -> None:
            for frame, view in job(k):
                where = f"block at (x, y, z) = {frame.origin}"
                # Blosc decodes from the view of the run; other codecs get the frame's own bytes.
                data = view if isinstance(codec, BlockCodec) else view.tobytes()
                buf = buffer(frame.origin)
                block = reader.decode(data, entries[frame.origin], dtype, buf.shape, where, buf, codec)  # type: ignore[arg-type]  # Blosc takes any buffer
                paste(frame.origin, block)

        list(pool().map(fill_run, range(len(runs))))
    elif len(origins) > 1:
        list(pool().map(fill, origins))
    elif origins:
        fill(origins[0])
    result = out[::zs, ::ys, ::xs]
    return result[squeeze] if squeeze else result
