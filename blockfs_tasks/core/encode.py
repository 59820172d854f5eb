"""Encoding a block for storage: the one place that checks a block and compresses it.

Both writers (the live :class:`~.directory.Directory` and the batch
:class:`~.batch.BatchWriter`) call :func:`encode_block`, so a block is
accepted or refused, and compressed, the same way whichever wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import BlockDTypeError, BlockShapeError

if TYPE_CHECKING:
    from .format import VolumeSpec


def as_storable(block: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``block`` as a C-ordered little-endian array of ``dtype``, or raise if that loses data.

    Safe casts always pass; an integer block of a wider integer dtype passes
    when all its values fit (``np.random.randint`` gives int64, for instance).
    """
    block = np.asarray(block)
    if block.dtype != dtype and not np.can_cast(block.dtype, dtype, "safe"):
        fits = False
        if block.dtype.kind in "iu" and dtype.kind in "iu":
            info = np.iinfo(dtype)
            fits = block.size == 0 or (int(block.min()) >= info.min and int(block.max()) <= info.max)
        if not fits:
            raise BlockDTypeError(
                f"{where}: a block of dtype {block.dtype} cannot be stored as {dtype.name} without loss"
            )
    return np.ascontiguousarray(block, dtype=dtype)


def check_block(
    spec: VolumeSpec, block: np.ndarray, x: int, y: int, z: int, where: str
) -> tuple[int, np.ndarray]:
    """Check the (z, y, x) ``block`` whose first voxel is (x, y, z): (position, block ready to encode).

    Raises as :func:`encode_block` does; the block returned may be ``block`` itself.
    """
    position = spec.grid.position(x, y, z)
    expected = spec.grid.block_shape_at(x, y, z)
    if tuple(np.shape(block)) != expected:
        raise BlockShapeError(f"{where}: expected shape (z, y, x) {expected}, got {tuple(np.shape(block))}")
    return position, as_storable(block, spec.dtype, where)


def encode_block(spec: VolumeSpec, block: np.ndarray, x: int, y: int, z: int, where: str) -> tuple[int, bytes]:
    """Check the (z, y, x) ``block`` whose first voxel is (x, y, z) and compress it: (position, frame).

    Raises :class:`~.errors.OutOfBoundsError` for an origin off the grid,
    :class:`~.errors.BlockShapeError` for a shape that is not the block's
    (edge blocks are truncated), :class:`~.errors.BlockDTypeError` for values
    the volume's dtype cannot hold. ``where`` names the block in errors.
    """
    position, storable = check_block(spec, block, x, y, z, where)
    return position, spec.codec.encode(storable)
