"""Deleting a block-aligned region of the working volume: its blocks read as zeros again.

The deleted blocks' entries are cleared and the directory file republished
atomically; their frames stay in the block files (still live while a commit
points at them) until a compaction punches them out.
"""

from __future__ import annotations

import numpy as np

from ..errors import OutOfBoundsError
from ..grid import BlockGrid
from .commits import write_directory
from .ops import exclusive
from .trees import load_tree


def region_positions(grid: BlockGrid, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> np.ndarray:
    """Block positions of a block-aligned (x, y, z) voxel box; ends may also be the volume's extent."""
    box = {"x": (x0, x1), "y": (y0, y1), "z": (z0, z1)}
    for (axis, (lo, hi)), extent, block in zip(box.items(), grid.extent_xyz, grid.block_xyz, strict=True):
        if not 0 <= lo < hi <= extent:
            raise OutOfBoundsError(f"Expected 0 <= {axis}0 < {axis}1 <= {extent}. Got {axis}0={lo}, {axis}1={hi}.")
        if lo % block or (hi % block and hi != extent):
            raise OutOfBoundsError(
                f"Expected {axis}0 and {axis}1 on the block grid (multiples of {block}, or {axis}1 = {extent}). "
                f"Got {axis}0={lo}, {axis}1={hi}: a delete clears whole blocks only."
            )
    (gz, gy, gx) = grid.grid_shape
    bx, by, bz = grid.block_xyz
    zs = np.arange(z0 // bz, -(-z1 // bz))
    ys = np.arange(y0 // by, -(-y1 // by))
    xs = np.arange(x0 // bx, -(-x1 // bx))
    return ((zs[:, None, None] * gy + ys[None, :, None]) * gx + xs[None, None, :]).ravel()


def delete_region(directory_path: str, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> int:
    """Clear the blocks of a block-aligned box of the working volume; return how many were present."""
    with exclusive(directory_path, "deleted"):
        tree = load_tree(directory_path)
        positions = region_positions(tree.spec.grid, x0, x1, y0, y1, z0, z1)
        present = int(np.count_nonzero(tree.index["file"][positions]))
        if present:
            tree.index[positions] = np.zeros(1, tree.index.dtype)
            tree.page_crcs = None
            write_directory(directory_path, tree)  # every block file stays named (see ops.publish_working)
        return present
