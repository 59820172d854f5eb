"""Multi-resolution pyramids of blockfs volumes: planning, downsampling, layout.

On-disk layout (see docs/pyramid.md)::

    myvol/info                          JSON: the levels, Neuroglancer-style
    myvol/1_1_1/precomputed.blockfs     level 0 (+ its block files)
    myvol/2_2_1/precomputed.blockfs     level 1, factors 2, 2, 1 (x, y, z) from level 0
    myvol/4_4_2/precomputed.blockfs     level 2 ...

A level's *key* is its downsampling factors relative to level 0, ``x_y_z``.
Every level has the block size of level 0; level ``k + 1`` has extent
``ceil(extent_k / step)`` per axis, where ``step`` (XYZ) are its factors
relative to level ``k``. Images are reduced by the MEAN of each window (integers
rounded half up), segmentations by its MODE (most frequent label, ties to the
smallest); a window cut by the volume's edge uses only the voxels present.
A block of level ``k + 1`` whose source blocks are all absent stays absent.
``info`` is written last: a folder with an ``info`` is a complete pyramid.

The work is split like every other blockfs job: :func:`plan_downsample_batches`
divides a level into batches of block origins, :func:`downsample_batch` computes
one batch into any writer with ``write_block(block, x, y, z)`` (a
:class:`~blockfs_tasks.core.batch.BatchWriter` or a live
:class:`~blockfs_tasks.core.Directory`), and :func:`build_pyramid` runs it all in
one process. This module never imports luigi.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .core.atomic import fsync_folder, write_atomically
from .core.batch import BatchWriter, batch_complete, build_directory
from .core.blockfile import fragment_name
from .core.codec import BlockCodec
from .core.directory import Directory, resolve_block_path, volume_files
from .core.errors import ConfigurationError, FormatError, MissingFileError, VolumeExistsError
from .core.format import VolumeSpec, read_directory
from .core.grid import BlockGrid
from .core.parallel import bounded_map

logger = logging.getLogger(__name__)

INFO_NAME = "info"
LEVEL_FILE = "precomputed.blockfs"
MODES = ("mean", "mode")
LAYER_TYPES = ("image", "segmentation")
LEVEL0_PLACEMENTS = ("link", "copy", "reference")

#: Axes whose resolution exceeds this times the finest resolution are not downsampled.
ANISOTROPY_THRESHOLD = 1.5

XYZ = tuple[int, int, int]


class BlockWriter(Protocol):
    """Anything blocks can be written to: a BatchWriter or a live Directory."""

    def write_block(self, block: np.ndarray, x: int, y: int, z: int) -> None: ...


# --------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Level:
    """One level of a pyramid; every field is in XYZ order."""

    key: str
    factors_xyz: XYZ  # relative to level 0
    step_xyz: XYZ  # relative to the level before (1, 1, 1 for level 0)
    extent_xyz: XYZ
    resolution_nm_xyz: tuple[float, float, float]


def level_key(factors_xyz: Sequence[int]) -> str:
    """The key (folder name, chunk URL prefix) of a level: ``"x_y_z"`` factors."""
    return "_".join(str(int(f)) for f in factors_xyz)


def _check_xyz(name: str, values: Sequence[Any], kind: type = int) -> tuple:
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"Expected {name} as three numbers (x, y, z). Got {values!r} instead.") from e
    if len(out) != 3 or any(not v > 0 for v in out) or any(kind(v) != v for v in values):
        raise ConfigurationError(f"Expected {name} as three positive {kind.__name__}s (x, y, z). Got {values!r} instead.")
    return out


def _auto_step(extent_xyz: XYZ, resolution_nm_xyz: tuple[float, ...]) -> XYZ:
    """2 on each axis that can shrink, but 1 on axes much coarser than the finest one."""
    movable = [i for i in range(3) if extent_xyz[i] > 1]
    finest = min(resolution_nm_xyz[i] for i in movable)
    return tuple(  # type: ignore[return-value]
        2 if i in movable and resolution_nm_xyz[i] <= ANISOTROPY_THRESHOLD * finest else 1 for i in range(3)
    )


def plan_levels(
    shape_zyx: Sequence[int],
    block_xyz: Sequence[int],
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
) -> list[Level]:
    """Choose the levels of a pyramid over a level 0 of ``shape_zyx`` (z, y, x).

    Parameters
    ----------
    shape_zyx
        Shape of level 0, (z, y, x) order.
    block_xyz
        Block size of every level, XYZ order.
    resolution_nm_xyz
        Voxel size of level 0 in nanometres, XYZ order.
    max_levels
        Most levels to make, level 0 included (``None``: no limit).
    factors
        Explicit per-level steps (XYZ), one per level after level 0, e.g.
        ``[(2, 2, 1), (2, 2, 2)]``. Without it, each step is 2 on every axis,
        except 1 on an axis whose resolution is over ``ANISOTROPY_THRESHOLD``
        times the finest one (anisotropic light-sheet data reach isotropy
        first) or whose extent is already 1; levels are added until one
        block holds the whole level.
    """
    if len(tuple(shape_zyx)) != 3:
        raise ConfigurationError(f"Expected a shape (z, y, x). Got {shape_zyx!r} instead.")
    extent = _check_xyz("a shape", tuple(reversed(tuple(shape_zyx))))
    block = _check_xyz("block sizes", block_xyz)
    resolution = _check_xyz("resolutions (nm)", resolution_nm_xyz, float)
    if max_levels is not None and (isinstance(max_levels, bool) or int(max_levels) < 1):
        raise ConfigurationError(f"Expected max_levels >= 1. Got {max_levels!r} instead.")
    steps = None if factors is None else [_check_xyz(f"factors of level {i + 1}", f) for i, f in enumerate(factors)]
    levels = [Level(level_key((1, 1, 1)), (1, 1, 1), (1, 1, 1), extent, resolution)]  # type: ignore[arg-type]
    while max_levels is None or len(levels) < max_levels:
        last = levels[-1]
        if steps is not None:
            if len(levels) > len(steps):
                break
            step = steps[len(levels) - 1]
        else:
            if all(e <= b for e, b in zip(last.extent_xyz, block)):
                break
            step = _auto_step(last.extent_xyz, last.resolution_nm_xyz)
        factors_xyz = tuple(f * s for f, s in zip(last.factors_xyz, step))
        levels.append(
            Level(
                level_key(factors_xyz),
                factors_xyz,  # type: ignore[arg-type]
                step,  # type: ignore[arg-type]
                tuple(-(-e // s) for e, s in zip(last.extent_xyz, step)),  # type: ignore[arg-type]
                tuple(r * f for r, f in zip(resolution, factors_xyz)),  # type: ignore[arg-type]
            )
        )
    if len({level.key for level in levels}) < len(levels):
        raise ConfigurationError(f"Two levels have the same factors: {[level.key for level in levels]}")
    return levels


def level_spec(level0: VolumeSpec, level: Level, mode: str = "mean", codec: BlockCodec | None = None) -> VolumeSpec:
    """The VolumeSpec of ``level``: level 0's block size, dtype and codec, the level's extent.

    The level is described in the metadata (``{"pyramid": {...}}``), which is
    where :func:`downsample_batch` finds the step from the level before.
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    return VolumeSpec(
        BlockGrid(level.extent_xyz, level0.grid.block_xyz),
        level0.dtype,
        codec or level0.codec,
        {
            "pyramid": {
                "key": level.key,
                "factors_xyz": list(level.factors_xyz),
                "step_xyz": list(level.step_xyz),
                "resolution_nm_xyz": list(level.resolution_nm_xyz),
                "mode": mode,
            }
        },
    )


def plan_downsample_batches(spec_next: VolumeSpec, target_batches: int) -> list[list[XYZ]]:
    """Split the blocks of a level into about ``target_batches`` batches of block origins (x, y, z).

    Batches are runs of consecutive block positions (x fastest, then y, z), so
    each batch reads a compact slab of the level below. No batch is empty.
    """
    if isinstance(target_batches, bool) or int(target_batches) < 1:
        raise ConfigurationError(f"Expected target_batches >= 1. Got {target_batches!r} instead.")
    origins = list(spec_next.grid.origins())
    n = min(int(target_batches), len(origins))
    bounds = [len(origins) * i // n for i in range(n + 1)]
    return [origins[bounds[i] : bounds[i + 1]] for i in range(n)]


# ------------------------------------------------------------------ reductions
def _offsets(step_zyx: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    sz, sy, sx = step_zyx
    return [(dz, dy, dx) for dz in range(sz) for dy in range(sy) for dx in range(sx)]


def _padded(region: np.ndarray, step_zyx: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``region`` zero-padded to whole windows, and the output shape."""
    out_shape = tuple(-(-n // s) for n, s in zip(region.shape, step_zyx))
    full = tuple(o * s for o, s in zip(out_shape, step_zyx))
    if full == region.shape:
        return region, out_shape  # type: ignore[return-value]
    padded = np.zeros(full, region.dtype)
    padded[: region.shape[0], : region.shape[1], : region.shape[2]] = region
    return padded, out_shape  # type: ignore[return-value]


def _views(a: np.ndarray, step_zyx: tuple[int, int, int]) -> list[np.ndarray]:
    """One strided view per window offset: view k holds voxel k of every window."""
    sz, sy, sx = step_zyx
    return [a[dz::sz, dy::sy, dx::sx] for dz, dy, dx in _offsets(step_zyx)]


def _valid(shape: tuple[int, ...], step_zyx: tuple[int, int, int], out_shape: tuple[int, int, int]) -> list[np.ndarray | bool]:
    """Per window offset, which windows hold that voxel (True: all of them)."""
    out = []
    for dz, dy, dx in _offsets(step_zyx):
        masks = [np.arange(o) * s + d < n for o, s, d, n in zip(out_shape, step_zyx, (dz, dy, dx), shape)]
        if all(m.all() for m in masks):
            out.append(True)
        else:
            out.append(masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :])
    return out


def _window_counts(region_shape: tuple[int, ...], step_zyx: tuple[int, int, int], out_shape: tuple[int, int, int]) -> np.ndarray:
    """Voxels of the region in each window (fewer than a full window at the far edges)."""
    per_axis = [np.minimum(s, n - np.arange(o) * s) for n, s, o in zip(region_shape, step_zyx, out_shape)]
    return per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]


def _sum(views: list[np.ndarray], dtype: Any) -> np.ndarray:
    total = views[0].astype(dtype)
    for view in views[1:]:
        total += view
    return total


def downsample_mean(region: np.ndarray, step_zyx: Sequence[int]) -> np.ndarray:
    """Mean of each ``step_zyx`` window of a (z, y, x) array; edge windows average the voxels they hold.

    Integers are rounded half up (exactly, also for 64-bit values); floats
    are averaged in float64.
    """
    step: tuple[int, int, int] = tuple(int(s) for s in step_zyx)  # type: ignore[assignment]
    padded, out_shape = _padded(region, step)  # zeros add nothing to the sums
    counts = _window_counts(region.shape, step, out_shape)
    dtype = region.dtype
    if dtype.kind == "f":
        return (_sum(_views(padded, step), np.float64) / counts).astype(dtype)
    if dtype.itemsize < 8:
        total = _sum(_views(padded, step), np.int64)
        return ((total + counts // 2) // counts).astype(dtype)
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
    return mean.view(dtype)


def downsample_mode(region: np.ndarray, step_zyx: Sequence[int]) -> np.ndarray:
    """Most frequent value of each ``step_zyx`` window of a (z, y, x) array; ties go to the smallest.

    Vectorized over windows: for each voxel offset k of a window, count how
    many voxels of the window equal voxel k (w * w array comparisons for
    windows of w voxels, 64 for 2x2x2); the mode is the smallest value among
    those with the largest count. Edge windows count only the voxels they hold.
    """
    step: tuple[int, int, int] = tuple(int(s) for s in step_zyx)  # type: ignore[assignment]
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
    for vk, count in zip(views, counts):
        np.minimum(mode, np.where(count == best, vk, never), out=mode)
    return mode


REDUCERS: dict[str, Callable[[np.ndarray, Sequence[int]], np.ndarray]] = {
    "mean": downsample_mean,
    "mode": downsample_mode,
}


# ----------------------------------------------------------------- downsampling
def _step_of(spec_next: VolumeSpec, step_xyz: Sequence[int] | None) -> XYZ:
    if step_xyz is None:
        try:
            step_xyz = spec_next.metadata["pyramid"]["step_xyz"]
        except (KeyError, TypeError) as e:
            raise ConfigurationError(
                "the level's spec has no metadata['pyramid']['step_xyz'] (make it with level_spec) "
                "and no step_xyz was given"
            ) from e
    return _check_xyz("downsampling steps", step_xyz)  # type: ignore[return-value]


def downsample_block(src: Directory, spec_next: VolumeSpec, origin_xyz: XYZ, step_xyz: XYZ, mode: str) -> np.ndarray | None:
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
    step = _step_of(spec_next, step_xyz)
    expected = tuple(-(-e // s) for e, s in zip(src.grid.extent_xyz, step))
    if expected != spec_next.grid.extent_xyz:
        raise ConfigurationError(
            f"{src.directory_filename}: extent (x, y, z) {src.grid.extent_xyz} downsampled by {step} "
            f"is {expected}, but the next level's extent is {spec_next.grid.extent_xyz}"
        )
    origins = [tuple(int(v) for v in o) for o in block_origins]
    for o in origins:
        spec_next.grid.check_origin(*o)

    def compute(origin: tuple[int, ...]) -> tuple[np.ndarray | None, tuple[int, ...]]:
        return downsample_block(src, spec_next, origin, step, mode), origin  # type: ignore[arg-type]

    written = 0
    for block, (x, y, z) in bounded_map(compute, origins, n_threads):
        if block is not None:
            writer.write_block(block, x, y, z)
            written += 1
    logger.debug("downsampled %d of %d blocks from %s", written, len(origins), src.directory_filename)
    return written


# ---------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Pyramid:
    """A pyramid folder: its levels and where each level's directory file is.

    ``paths`` are relative to ``folder`` (``1_1_1/precomputed.blockfs``...).
    """

    folder: str
    levels: tuple[Level, ...]
    paths: tuple[str, ...]
    dtype: str
    block_xyz: XYZ
    layer_type: str = "image"
    mode: str = "mean"

    def path(self, i: int) -> str:
        """Absolute path of level ``i``'s directory file."""
        return os.path.normpath(os.path.join(self.folder, self.paths[i]))

    def open(self, i: int) -> Directory:
        """Open level ``i`` read-only."""
        return Directory.open(self.path(i))

    def to_info(self) -> dict[str, Any]:
        """The ``info`` JSON: Neuroglancer precomputed keys plus ``blockfs`` paths and ``factors``."""
        return {
            "@type": "blockfs_pyramid",
            "version": 1,
            "type": self.layer_type,
            "data_type": self.dtype,
            "num_channels": 1,
            "downsampling": self.mode,
            "scales": [
                {
                    "key": level.key,
                    "size": list(level.extent_xyz),
                    "resolution": list(level.resolution_nm_xyz),
                    "voxel_offset": [0, 0, 0],
                    "chunk_sizes": [list(self.block_xyz)],
                    "encoding": "raw",
                    "factors": list(level.factors_xyz),
                    "blockfs": path,
                }
                for level, path in zip(self.levels, self.paths)
            ],
        }

    @classmethod
    def from_info(cls, folder: str) -> Pyramid:
        """Read the ``info`` of a pyramid folder."""
        folder = os.path.abspath(folder)
        path = os.path.join(folder, INFO_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError as e:
            raise MissingFileError(f"{path}: no pyramid info (is {folder} a finished pyramid?)") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: not valid JSON: {e}") from e
        try:
            if info.get("@type") != "blockfs_pyramid":
                raise FormatError(f"{path}: '@type' is {info.get('@type')!r}, expected 'blockfs_pyramid'")
            levels, paths, previous = [], [], (1, 1, 1)
            for scale in info["scales"]:
                factors = tuple(int(f) for f in scale["factors"])
                step = tuple(f // p for f, p in zip(factors, previous))
                levels.append(
                    Level(
                        str(scale["key"]),
                        factors,  # type: ignore[arg-type]
                        step,  # type: ignore[arg-type]
                        tuple(int(v) for v in scale["size"]),  # type: ignore[arg-type]
                        tuple(float(v) for v in scale["resolution"]),  # type: ignore[arg-type]
                    )
                )
                paths.append(str(scale["blockfs"]))
                previous = factors
            return cls(
                folder,
                tuple(levels),
                tuple(paths),
                str(info["data_type"]),
                tuple(int(v) for v in info["scales"][0]["chunk_sizes"][0]),  # type: ignore[arg-type]
                str(info.get("type", "image")),
                str(info.get("downsampling", "mean")),
            )
        except (KeyError, IndexError, TypeError, ValueError) as e:
            if isinstance(e, FormatError):
                raise
            raise FormatError(f"{path}: not a blockfs pyramid info: {e!r}") from e


def is_pyramid(path: str) -> bool:
    """True when ``path`` is a folder holding a pyramid ``info``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, INFO_NAME))


def plan_pyramid(
    level0_path: str,
    out_folder: str,
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    mode: str = "mean",
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    level0: str = "link",
) -> Pyramid:
    """Plan the pyramid of ``level0_path`` in ``out_folder`` (reads only level 0's header).

    ``level0`` says where level 0 will be: ``"link"`` or ``"copy"`` put it in
    ``out_folder/1_1_1/`` (hard links fall back to a copy across filesystems),
    ``"reference"`` records its path relative to ``out_folder``.
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    if level0 not in LEVEL0_PLACEMENTS:
        raise ConfigurationError(f"Invalid level0 placement {level0!r}; expected one of {LEVEL0_PLACEMENTS}")
    spec = read_directory(level0_path).spec
    levels = plan_levels(spec.grid.shape, spec.grid.block_xyz, resolution_nm_xyz, max_levels, factors)
    out_folder = os.path.abspath(out_folder)
    paths = [os.path.join(level.key, LEVEL_FILE) for level in levels]
    if level0 == "reference":
        paths[0] = os.path.relpath(os.path.abspath(level0_path), out_folder)
    return Pyramid(
        out_folder,
        tuple(levels),
        tuple(paths),
        spec.dtype.name,
        spec.grid.block_xyz,
        "segmentation" if mode == "mode" else "image",
        mode,
    )


def place_level0(pyramid: Pyramid, level0_path: str, how: str = "link") -> str:
    """Put level 0 where ``pyramid`` expects it (hard links, or a copy); return its path.

    The directory file is written last, so an interrupted copy is not a volume.
    """
    target = pyramid.path(0)
    source = os.path.abspath(level0_path)
    if how == "reference" or os.path.abspath(target) == source:
        return target
    contents = read_directory(source)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    names = [resolve_block_path(source, n) for n in contents.block_files]
    for src in [*names, source]:
        dest = target if src == source else os.path.join(os.path.dirname(target), os.path.basename(src))
        if os.path.exists(dest):
            if os.path.samefile(src, dest):
                continue
            os.unlink(dest)
        if how == "link":
            try:
                os.link(src, dest)
                continue
            except OSError as e:
                logger.info("cannot hard-link %s (%s); copying it", src, e)
        shutil.copyfile(src, dest + ".tmp-copy")
        os.replace(dest + ".tmp-copy", dest)
    fsync_folder(target)
    return target


def prepare_pyramid(pyramid: Pyramid, level0_path: str, how: str = "link") -> None:
    """Create the folder of every level and put level 0 in place (the first step of a build)."""
    for i in range(len(pyramid.levels)):
        if i or how != "reference":
            os.makedirs(os.path.dirname(pyramid.path(i)), exist_ok=True)
    place_level0(pyramid, level0_path, how)


def write_pyramid_info(pyramid: Pyramid) -> str:
    """Publish the pyramid's ``info`` atomically (last: it marks the pyramid complete)."""
    path = os.path.join(pyramid.folder, INFO_NAME)
    write_atomically(path, [json.dumps(pyramid.to_info(), indent=1).encode("utf-8")])
    return path


def level_batches(pyramid: Pyramid, i: int, blocks_per_batch: int) -> list[list[XYZ]]:
    """Batches of block origins of level ``i`` (>= 1), ``blocks_per_batch`` blocks or fewer each."""
    grid = BlockGrid(pyramid.levels[i].extent_xyz, pyramid.block_xyz)
    return plan_downsample_batches(VolumeSpec(grid, np.dtype(pyramid.dtype)), math.ceil(grid.n_blocks / blocks_per_batch))


def build_level(
    pyramid: Pyramid,
    i: int,
    level0_spec: VolumeSpec,
    blocks_per_batch: int = 256,
    n_threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Make level ``i`` (>= 1) from level ``i - 1``, batch by batch; return blocks written.

    Committed batches of an interrupted run with the same parameters are kept.
    """
    spec = level_spec(level0_spec, pyramid.levels[i], pyramid.mode)
    path = pyramid.path(i)
    if os.path.exists(path):
        try:
            done = read_directory(path).spec
        except FormatError:
            done = None
        if done is not None and done.same_volume(spec) and done.metadata == spec.metadata:
            logger.info("%s: level already built", path)
            return 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = pyramid.open(i - 1)
    batches = level_batches(pyramid, i, blocks_per_batch)
    written = 0
    for number, origins in enumerate(batches):
        if batch_complete(path, number, spec):
            logger.debug("%s: batch %d already committed", path, number)
        else:
            with BatchWriter(path, spec, number) as writer:
                written += downsample_batch(src, spec, writer, origins, pyramid.mode, n_threads=n_threads)
        if progress is not None:
            progress(len(origins))
    build_directory(path, spec, range(len(batches)))
    for number in range(len(batches)):
        os.unlink(fragment_name(os.path.abspath(path), number))
    return written


def _remove_volume(path: str) -> None:
    """Remove a level's directory, block and fragment files, if any."""
    if not os.path.isdir(os.path.dirname(path)):
        return
    for old in [path, *volume_files(path)]:
        if os.path.exists(old):
            os.unlink(old)


def build_pyramid(
    level0_path: str,
    out_folder: str,
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    mode: str = "mean",
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    level0: str = "link",
    blocks_per_batch: int = 256,
    n_threads: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Pyramid:
    """Build a whole pyramid in this process and write its ``info``; return it.

    A finished pyramid in ``out_folder`` is an error unless ``overwrite``;
    an interrupted one is resumed (committed batches are kept). ``progress``
    is called with the number of blocks of each batch done.
    """
    pyramid = plan_pyramid(level0_path, out_folder, resolution_nm_xyz, mode, max_levels, factors, level0)
    info_path = os.path.join(pyramid.folder, INFO_NAME)
    if os.path.exists(info_path):
        if not overwrite:
            raise VolumeExistsError(f"{info_path}: a pyramid already exists there; pass overwrite to replace it")
        try:
            old = Pyramid.from_info(pyramid.folder)
            old_paths = [old.path(i) for i in range(1, len(old.levels))]
        except FormatError:
            old_paths = []
        os.unlink(info_path)
        for path in {*old_paths, *(pyramid.path(i) for i in range(1, len(pyramid.levels)))}:
            inside = os.path.dirname(path).startswith(pyramid.folder + os.sep)  # never outside the pyramid
            if inside and os.path.abspath(path) != os.path.abspath(level0_path):
                _remove_volume(path)
                if os.path.isdir(os.path.dirname(path)) and not os.listdir(os.path.dirname(path)):
                    os.rmdir(os.path.dirname(path))
    prepare_pyramid(pyramid, level0_path, level0)
    level0_spec = read_directory(pyramid.path(0)).spec
    threads = n_threads or os.cpu_count() or 1
    for i in range(1, len(pyramid.levels)):
        n = build_level(pyramid, i, level0_spec, blocks_per_batch, threads, progress)
        logger.info("level %s: %d blocks written", pyramid.levels[i].key, n)
    write_pyramid_info(pyramid)
    return pyramid


def pyramid_blocks(pyramid: Pyramid) -> int:
    """Number of block positions of every level above level 0 (for progress bars)."""
    return sum(BlockGrid(level.extent_xyz, pyramid.block_xyz).n_blocks for level in pyramid.levels[1:])
