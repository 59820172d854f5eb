"""Region reads: a numpy-style (z, y, x) key turned into the blocks it touches, read in parallel.

:meth:`~.directory.Directory.__getitem__` is a thin caller: it gives the
index lookup and the block read, this module plans the region and pastes
each block's overlap into the output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from .errors import OutOfBoundsError
from .grid import XYZ, ZYX, BlockGrid

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
) -> np.ndarray:
    """Read the region ``slices`` (from :func:`normalize_key`) of a volume.

    ``entry_of(origin)`` gives a block's index entry (file 0 = absent, left as
    zeros); ``read_into(entry, origin, buffer)`` decodes it into a reusable
    buffer; ``pool()`` gives the threads used when more than one block is read.
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

    def fill(origin: XYZ) -> None:
        bx, by, bz = origin
        shape = grid.block_shape_at(bx, by, bz)
        cache = buffers.__dict__.setdefault("by_shape", {})
        if shape not in cache:
            cache[shape] = np.empty(shape, dtype)
        block = read_into(entries[origin], origin, cache[shape])
        sz, sy, sx = block.shape
        zz = slice(max(z0, bz), min(box[0], bz + sz))
        yy = slice(max(y0, by), min(box[1], by + sy))
        xx = slice(max(x0, bx), min(box[2], bx + sx))
        out[zz.start - z0 : zz.stop - z0, yy.start - y0 : yy.stop - y0, xx.start - x0 : xx.stop - x0] = block[
            zz.start - bz : zz.stop - bz, yy.start - by : yy.stop - by, xx.start - bx : xx.stop - bx
        ]

    if len(origins) > 1:
        list(pool().map(fill, origins))
    elif origins:
        fill(origins[0])
    result = out[::zs, ::ys, ::xs]
    return result[squeeze] if squeeze else result
