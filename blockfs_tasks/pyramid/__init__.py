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
one process. This package never imports luigi.

Where things are: :mod:`.planning` (levels, level specs, batches of blocks;
pure arithmetic), :mod:`.reduce` (mean / mode downsampling of arrays and
blocks), :mod:`.layout` (the :class:`Pyramid` folder, its ``info``, level 0
placement, the batches of a planned level),
:mod:`.groups` (several levels from one read of their base: :func:`plan_groups`,
:func:`downsample_group_batch`), :mod:`.build` (:func:`build_level`, :func:`build_pyramid`) and
:mod:`.prereduce` (level 1 reduced by the ingest batches from the raw data they hold, left as slab
files beside level 0, read instead of decoding level 0). Every public name but :mod:`.prereduce`'s
is importable from ``blockfs_tasks.pyramid``.
"""

from __future__ import annotations

from .build import build_level, build_pyramid
from .groups import LevelGroup, downsample_group_batch, group_batches, group_of, plan_groups
from .layout import (
    INFO_NAME,
    LAYER_TYPES,
    LEVEL0_PLACEMENTS,
    LEVEL_FILE,
    Pyramid,
    is_pyramid,
    level_batches,
    place_level0,
    plan_pyramid,
    prepare_pyramid,
    pyramid_blocks,
    write_pyramid_info,
)
from .planning import (
    ANISOTROPY_THRESHOLD,
    MODES,
    XYZ,
    Level,
    level_key,
    level_spec,
    plan_downsample_batches,
    plan_levels,
)
from .reduce import (
    REDUCERS,
    BlockWriter,
    downsample_batch,
    downsample_block,
    downsample_mean,
    downsample_mode,
)

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "INFO_NAME",
    "LAYER_TYPES",
    "LEVEL0_PLACEMENTS",
    "LEVEL_FILE",
    "MODES",
    "REDUCERS",
    "XYZ",
    "BlockWriter",
    "LevelGroup",
    "Level",
    "Pyramid",
    "build_level",
    "build_pyramid",
    "downsample_batch",
    "downsample_block",
    "downsample_group_batch",
    "downsample_mean",
    "downsample_mode",
    "group_batches",
    "group_of",
    "is_pyramid",
    "level_batches",
    "level_key",
    "level_spec",
    "place_level0",
    "plan_downsample_batches",
    "plan_groups",
    "plan_levels",
    "plan_pyramid",
    "prepare_pyramid",
    "pyramid_blocks",
    "write_pyramid_info",
]
