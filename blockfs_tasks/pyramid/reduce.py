"""Downsampling: the mean / mode reductions of (z, y, x) arrays, and the blocks of a level.

:func:`downsample_mean` and :func:`downsample_mode` reduce arrays;
:func:`downsample_block` makes one block of the next level from the level below,
and :func:`downsample_batch` makes a batch of them into any :class:`BlockWriter`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, cast

import numpy as np

from ..core.directory import Directory
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.parallel import bounded_map
from .planning import MODES, XYZ, check_xyz

logger = logging.getLogger(__name__)

#: Bytes of a region reduced at a time by the whole-window mean: slices of whole z windows this
#: small keep the 32-bit sums in the CPU caches (a 32 MiB region at once took 2x as long, measured
#: in benchmarks/results/pyramid.md); windows never straddle slices, so the result is the same.
CHUNK_BYTES = 2 << 20


class BlockWriter(Protocol):
    """Anything blocks can be written to: a BatchWriter or a live Directory."""

    def write_block(self, block: np.ndarray, x: int, y: int, z: int) -> None: ...


# ------------------------------------------------------------------ reductions
def _offsets(step_zyx: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    sz, sy, sx = step_zyx
    return [(dz, dy, dx) for dz in range(sz) for dy in range(sy) for dx in range(sx)]


def _padded(region: np.ndarray, step_zyx: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``region`` zero-padded to whole windows, and the output shape."""
    oz, oy, ox = (-(-n // s) for n, s in zip(region.shape, step_zyx, strict=True))
    full = (oz * step_zyx[0], oy * step_zyx[1], ox * step_zyx[2])
    if full == region.shape:
        return region, (oz, oy, ox)
    padded = np.zeros(full, region.dtype)
    padded[: region.shape[0], : region.shape[1], : region.shape[2]] = region
    return padded, (oz, oy, ox)


def _views(a: np.ndarray, step_zyx: tuple[int, int, int]) -> list[np.ndarray]:
    """One strided view per window offset: view k holds voxel k of every window."""
    sz, sy, sx = step_zyx
    return [a[dz::sz, dy::sy, dx::sx] for dz, dy, dx in _offsets(step_zyx)]


def _valid(
    shape: tuple[int, ...], step_zyx: tuple[int, int, int], out_shape: tuple[int, int, int]
) -> list[np.ndarray | bool]:
    """Per window offset, which windows hold that voxel (True: all of them)."""
    out: list[np.ndarray | bool] = []
    for dz, dy, dx in _offsets(step_zyx):
        masks = [
            np.arange(o) * s + d < n for o, s, d, n in zip(out_shape, step_zyx, (dz, dy, dx), shape, strict=True)
        ]
        if all(m.all() for m in masks):
            out.append(True)
        else:
            out.append(masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :])
    return out


def _window_counts(
    region_shape: tuple[int, ...], step_zyx: tuple[int, int, int], out_shape: tuple[int, int, int]
) -> np.ndarray:
    """Voxels of the region in each window (fewer than a full window at the far edges)."""
    per_axis = [np.minimum(s, n - np.arange(o) * s) for n, s, o in zip(region_shape, step_zyx, out_shape, strict=True)]
    return per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]


def _sum(views: list[np.ndarray], dtype: Any) -> np.ndarray:
    total = views[0].astype(dtype)
    for view in views[1:]:
        total += view
    return total


def _mean_whole_windows(region: np.ndarray, step_zyx: tuple[int, int, int]) -> np.ndarray | None:
    """The fast path of :func:`downsample_mean`: 8- to 32-bit integers cut into whole windows, else None.

    Sums one axis at a time (each pass halves the data) in an accumulator
    that cannot overflow (the data's own unsigned type when its maximum
    allows, else 32 or 64 bits), and rounds half up like the general
    path: ``floor((sum + n // 2) / n)``, a shift when ``n`` is a power of two.
    About 3.5x faster than the general path for 2x2x2 uint16.
    """
    dtype = region.dtype
    n = math.prod(step_zyx)
    if dtype.kind not in "iu" or dtype.itemsize > 4 or any(d % s for d, s in zip(region.shape, step_zyx, strict=True)):
        return None
    bits = dtype.itemsize * 8 + n.bit_length()
    acc = np.dtype(f"{'u' if dtype.kind == 'u' else ''}int{32 if bits < 32 else 64}")
    if dtype.kind == "u" and region.size and int(region.max()) * n + n // 2 <= np.iinfo(dtype).max:
        acc = dtype  # sums fit the data's own width (12-bit camera data in uint16): half the memory traffic
    total = region
    for axis, s in enumerate(step_zyx):
        if s == 1:
            continue
        views = [total[(slice(None),) * axis + (slice(k, None, s),)] for k in range(s)]
        summed = np.add(views[0], views[1], dtype=acc)
        for view in views[2:]:
            summed += view
        total = summed
    if total is region:  # a 1x1x1 step
        return region.copy()
    total += acc.type(n // 2)
    if n & (n - 1) == 0:
        total >>= acc.type(n.bit_length() - 1)
    else:
        total //= acc.type(n)
    result: np.ndarray = total.astype(dtype, copy=False)
    return result


def downsample_mean(region: np.ndarray, step_zyx: Sequence[int]) -> np.ndarray:
    """Mean of each ``step_zyx`` window of a (z, y, x) array; edge windows average the voxels they hold.

    Integers are rounded half up (exactly, also for 64-bit values); floats
    are averaged in float64.
    """
    sz, sy, sx = (int(s) for s in step_zyx)
    step = (sz, sy, sx)
    whole = region.dtype.kind in "iu" and region.dtype.itemsize <= 4
    if not whole or any(d % s for d, s in zip(region.shape, step, strict=True)):
        return _mean_general(region, step)
    plane_bytes = region[0].nbytes * sz or 1
    slab = sz * max(1, CHUNK_BYTES // plane_bytes)  # whole z windows per slice
    if slab >= region.shape[0]:
        return cast(np.ndarray, _mean_whole_windows(region, step))
    out = np.empty((region.shape[0] // sz, region.shape[1] // sy, region.shape[2] // sx), region.dtype)
    for z in range(0, region.shape[0], slab):
        out[z // sz : (z + slab) // sz] = cast(np.ndarray, _mean_whole_windows(region[z : z + slab], step))
    return out


def _mean_general(region: np.ndarray, step: tuple[int, int, int]) -> np.ndarray:
    """:func:`downsample_mean` for every dtype and edge: sums of strided views over zero padding."""
    padded, out_shape = _padded(region, step)  # zeros add nothing to the sums
    counts = _window_counts(region.shape, step, out_shape)
    dtype = region.dtype
    result: np.ndarray
    if dtype.kind == "f":
        result = (_sum(_views(padded, step), np.float64) / counts).astype(dtype)
        return result
    if dtype.itemsize < 8:
        total = _sum(_views(padded, step), np.int64)
        result = ((total + counts // 2) // counts).astype(dtype)
        return result
    # 64-bit integers: sums may need 67 bits. Shift signed values to unsigned
    # (flip the sign bit: an order-preserving shift by 2**63), split each value
    # into 32-bit halves, and divide the high sum first.
    unsigned = padded.view(np.uint64)
    if dtype.kind == "i":
        unsigned = unsigned ^ np.uint64(1 << 63)
    c = counts.astype(np.uint64)
    views = _views(unsigned, step)
    hi = _sum([v >> np.uint64(32) for v in views], np.uint64)
    lo = _sum([v & np.uint64(0xFFFFFFFF) for v in views], np.uint64)
    if dtype.kind == "i":  # padding voxels were 0 before the flip; they must add nothing
        hi -= (np.uint64(len(views)) - c) * np.uint64(1 << 31)
    q_hi, r_hi = hi // c, hi % c
    mean = (q_hi << np.uint64(32)) + ((r_hi << np.uint64(32)) + lo + c // np.uint64(2)) // c
    if dtype.kind == "i":
        mean ^= np.uint64(1 << 63)
    result = mean.view(dtype)
    return result


def downsample_mode(region: np.ndarray, step_zyx: Sequence[int]) -> np.ndarray:
    """Most frequent value of each ``step_zyx`` window of a (z, y, x) array; ties go to the smallest.

    Vectorized over windows: for each voxel offset k of a window, count how
    many voxels of the window equal voxel k (w * w array comparisons for
    windows of w voxels, 64 for 2x2x2); the mode is the smallest value among
    those with the largest count. Edge windows count only the voxels they hold.
    """
    sz, sy, sx = (int(s) for s in step_zyx)
    step = (sz, sy, sx)
    padded, out_shape = _padded(region, step)
    views = [np.ascontiguousarray(v) for v in _views(padded, step)]
    valid = _valid(region.shape, step, out_shape)
    count_dtype = np.uint8 if len(views) < 256 else np.int32
    counts = [np.ones(out_shape, count_dtype) for _ in views]
    for k in range(len(views)):
        for j in range(k + 1, len(views)):  # equality is symmetric: one comparison per pair
            same = views[k] == views[j]
            if valid[j] is not True:
                same &= valid[j]
            if valid[k] is not True:
                same &= valid[k]
            counts[k] += same
            counts[j] += same
    for k in range(len(views)):
        if valid[k] is not True:
            counts[k][~valid[k]] = 0  # a padding voxel is never the mode
    best = np.maximum.reduce(counts)
    if region.dtype.kind == "f":
        never = np.array(np.inf, region.dtype)
    else:
        never = np.array(np.iinfo(region.dtype).max, region.dtype)
    mode = np.full(out_shape, never, region.dtype)
    for vk, count in zip(views, counts, strict=True):
        np.minimum(mode, np.where(count == best, vk, never), out=mode)
    return mode


REDUCERS: dict[str, Callable[[np.ndarray, Sequence[int]], np.ndarray]] = {
    "mean": downsample_mean,
    "mode": downsample_mode,
}


# ----------------------------------------------------------------- downsampling
def step_of(spec_next: VolumeSpec, step_xyz: Sequence[int] | None) -> XYZ:
    """``step_xyz``, or the step recorded in a level spec's metadata, checked."""
    if step_xyz is None:
        try:
            step_xyz = spec_next.metadata["pyramid"]["step_xyz"]
        except (KeyError, TypeError) as e:
            raise ConfigurationError(
                "the level's spec has no metadata['pyramid']['step_xyz'] (make it with level_spec) "
                "and no step_xyz was given"
            ) from e
    sx, sy, sz = check_xyz("downsampling steps", step_xyz)
    return sx, sy, sz


def downsample_block(
    src: Directory, spec_next: VolumeSpec, origin_xyz: XYZ, step_xyz: XYZ, mode: str
) -> np.ndarray | None:
    """The block of the next level at ``origin_xyz``, or None when its source blocks are all absent."""
    x, y, z = origin_xyz
    sx, sy, sz = step_xyz
    shape = spec_next.grid.block_shape_at(x, y, z)
    ex, ey, ez = src.grid.extent_xyz
    z0, y0, x0 = z * sz, y * sy, x * sx
    z1, y1, x1 = min(ez, z0 + shape[0] * sz), min(ey, y0 + shape[1] * sy), min(ex, x0 + shape[2] * sx)
    if not any(src.has_block(*o) for o in src.grid.origins_in_region(z0, z1, y0, y1, x0, x1)):
        return None
    block = REDUCERS[mode](src[z0:z1, y0:y1, x0:x1], (sz, sy, sx))
    if block.shape != shape:
        raise ConfigurationError(
            f"level of extent (x, y, z) {spec_next.grid.extent_xyz} does not match source "
            f"{src.directory_filename} of extent {src.grid.extent_xyz} with steps {step_xyz}: block at "
            f"(x, y, z) = {origin_xyz} would be {block.shape}, expected {shape} (z, y, x)"
        )
    return block


def downsample_batch(
    src: Directory,
    spec_next: VolumeSpec,
    writer: BlockWriter,
    block_origins: Iterable[Sequence[int]],
    mode: str = "mean",
    step_xyz: Sequence[int] | None = None,
    n_threads: int = 1,
) -> int:
    """Compute the blocks of the next level at ``block_origins`` from level ``src``; return blocks written.

    Parameters
    ----------
    src
        The level below, opened for reading.
    spec_next
        The spec of the level being made (:func:`level_spec`); its metadata give
        the step from ``src`` unless ``step_xyz`` is passed.
    writer
        Where blocks go, one ``writer.write_block(block, x, y, z)`` call each,
        from this thread (a BatchWriter or a live Directory).
    block_origins
        Origins (x, y, z) of the blocks to make, in the next level's voxels.
    mode
        ``"mean"`` for images, ``"mode"`` for segmentations.
    n_threads
        Threads reading and reducing blocks ahead of the writer.
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    step = step_of(spec_next, step_xyz)
    expected = tuple(-(-e // s) for e, s in zip(src.grid.extent_xyz, step, strict=True))
    if expected != spec_next.grid.extent_xyz:
        raise ConfigurationError(
            f"{src.directory_filename}: extent (x, y, z) {src.grid.extent_xyz} downsampled by {step} "
            f"is {expected}, but the next level's extent is {spec_next.grid.extent_xyz}"
        )
    origins = [tuple(int(v) for v in o) for o in block_origins]
    for o in origins:
        spec_next.grid.check_origin(*o)

    def compute(origin: tuple[int, ...]) -> tuple[np.ndarray | None, tuple[int, ...]]:
        return downsample_block(src, spec_next, cast(XYZ, origin), step, mode), origin  # checked above

    written = 0
    for block, (x, y, z) in bounded_map(compute, origins, n_threads):
        if block is not None:
            writer.write_block(block, x, y, z)
            written += 1
    logger.debug("downsampled %d of %d blocks from %s", written, len(origins), src.directory_filename)
    return written
