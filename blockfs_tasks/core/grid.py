"""The block grid: which blocks a volume has, where they start, how big each is.

Coordinates given as ``x, y, z`` are voxel offsets in XYZ order (the original
blockfs API); shapes and slices are in (z, y, x) order, like the arrays.
Blocks are numbered in C order over (z block, y block, x block): x varies
fastest. That number is a block's *position*, the key of every index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from .checks import check_positive
from .errors import ConfigurationError, OutOfBoundsError

# Two names for the two axis orders (the same type; the name says which order a value is in).
XYZ: TypeAlias = tuple[int, int, int]  # x, y, z: voxel offsets, extents, block sizes (metadata, URLs, CLI)
ZYX: TypeAlias = tuple[int, int, int]  # z, y, x: array shapes and array indices


def _positive_xyz(name: str, values: tuple[int, ...]) -> tuple[int, ...]:
    """Three positive integers, (x, y, z); ``name`` ("extent", "block size") names them in errors."""
    if len(values) != 3:
        raise ConfigurationError("Expected three extents and three block sizes (x, y, z).")
    return tuple(
        check_positive(v, f"the {axis} value of the {name}s (x, y, z) {values}")
        for axis, v in zip("xyz", values, strict=True)
    )


@dataclass(frozen=True)
class BlockGrid:
    """A volume's extent and block size, both in XYZ order."""

    extent_xyz: XYZ
    block_xyz: XYZ

    def __post_init__(self) -> None:
        object.__setattr__(self, "extent_xyz", _positive_xyz("extent", tuple(self.extent_xyz)))
        object.__setattr__(self, "block_xyz", _positive_xyz("block size", tuple(self.block_xyz)))

    @property
    def shape(self) -> ZYX:
        """Volume shape in (z, y, x) order."""
        x, y, z = self.extent_xyz
        return (z, y, x)

    @property
    def block_shape(self) -> ZYX:
        """Full block shape in (z, y, x) order."""
        x, y, z = self.block_xyz
        return (z, y, x)

    @property
    def grid_shape(self) -> ZYX:
        """Number of blocks along (z, y, x)."""
        (ez, ey, ex), (bz, by, bx) = self.shape, self.block_shape
        return -(-ez // bz), -(-ey // by), -(-ex // bx)

    @property
    def n_blocks(self) -> int:
        """Number of block positions in the volume."""
        gz, gy, gx = self.grid_shape
        return gz * gy * gx

    def check_origin(self, x: int, y: int, z: int) -> None:
        """Raise unless (x, y, z) is the first voxel of a block inside the volume."""
        for name, v, extent, size in zip("xyz", (x, y, z), self.extent_xyz, self.block_xyz, strict=True):
            if not 0 <= v < extent:
                raise OutOfBoundsError(
                    f"{name}={v} is outside the volume: expected 0 <= {name} < {extent} "
                    f"(volume extent x, y, z = {self.extent_xyz})"
                )
            if v % size:
                raise OutOfBoundsError(
                    f"{name}={v} is off the block grid: expected a multiple of the "
                    f"{name} block size {size}"
                )

    def position(self, x: int, y: int, z: int) -> int:
        """Position (C-order block number) of the block starting at voxel (x, y, z)."""
        self.check_origin(x, y, z)
        _, gy, gx = self.grid_shape
        bx, by, bz = self.block_xyz
        return ((z // bz) * gy + y // by) * gx + x // bx

    def origin(self, position: int) -> XYZ:
        """First voxel (x, y, z) of the block at ``position``."""
        if not 0 <= position < self.n_blocks:
            raise OutOfBoundsError(f"block position {position} outside 0..{self.n_blocks - 1}")
        gz, gy, gx = self.grid_shape
        iz, rest = divmod(int(position), gy * gx)
        iy, ix = divmod(rest, gx)
        bx, by, bz = self.block_xyz
        return (ix * bx, iy * by, iz * bz)

    def block_shape_at(self, x: int, y: int, z: int) -> ZYX:
        """Shape (z, y, x) of the block starting at (x, y, z); edge blocks are truncated."""
        ex, ey, ez = self.extent_xyz
        bx, by, bz = self.block_xyz
        return (min(ez - z, bz), min(ey - y, by), min(ex - x, bx))

    def origins(self) -> Iterator[XYZ]:
        """Every block origin (x, y, z), in position order."""
        ex, ey, ez = self.extent_xyz
        bx, by, bz = self.block_xyz
        for z in range(0, ez, bz):
            for y in range(0, ey, by):
                for x in range(0, ex, bx):
                    yield (x, y, z)

    def origins_in_region(
        self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int
    ) -> Iterator[XYZ]:
        """Origins (x, y, z) of the blocks that overlap a (z, y, x) voxel box."""
        bx, by, bz = self.block_xyz
        for z in range(z0 - z0 % bz, z1, bz):
            for y in range(y0 - y0 % by, y1, by):
                for x in range(x0 - x0 % bx, x1, bx):
                    yield (x, y, z)
