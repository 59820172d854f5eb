"""What a volume holds (blockfs-info) and whether every block is sound (blockfs-verify)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .directory import Directory
from .errors import BlockfsError
from .parallel import bounded_map


def volume_info(path: str) -> dict[str, Any]:
    """Format version, extents, dtype, block size, codec, blocks present, bytes, ratio."""
    d = Directory.open(path)
    index = d.index
    present = index["file"] != 0
    stored = int(index["size"][present].sum(dtype=np.uint64))
    raw = _raw_bytes(d, np.flatnonzero(present))
    return {
        "path": d.directory_filename,
        "format_version": d.version,
        "extent_xyz": list(d.grid.extent_xyz),
        "shape_zyx": list(d.shape),
        "dtype": d.dtype.name,
        "block_size_xyz": list(d.grid.block_xyz),
        "compression": d.compression,
        "compression_level": d.compression_level,
        "shuffle": d.spec.codec.shuffle,
        "blocks_present": int(present.sum()),
        "blocks_total": d.grid.n_blocks,
        "stored_bytes": stored,
        "raw_bytes": raw,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "block_files": d.block_filenames,
        "metadata": d.metadata,
    }


def _raw_bytes(d: Directory, positions: np.ndarray) -> int:
    """Uncompressed size of the blocks at ``positions``, edge blocks truncated."""
    counts = np.ones(len(positions), np.int64)
    for axis, i in enumerate(np.unravel_index(positions, d.grid.grid_shape)):
        size, extent = d.grid.block_shape[axis], d.shape[axis]
        counts *= np.minimum(extent - i.astype(np.int64) * size, size)
    return int(counts.sum()) * d.dtype.itemsize


@dataclass(frozen=True)
class BadBlock:
    """A block that failed verification."""

    origin_xyz: tuple[int, int, int]
    error: str

    def __str__(self) -> str:
        x, y, z = self.origin_xyz
        return f"block at (x, y, z) = ({x}, {y}, {z}): {self.error}"


def verify_volume(
    path: str, n_threads: int | None = None, progress: Callable[[int], None] | None = None
) -> list[BadBlock]:
    """Decode every present block and check its checksum; return the bad ones.

    ``progress`` is called with the number of blocks checked since the last call.
    """
    d = Directory.open(path)
    origins = list(d)

    def check(origin: tuple[int, int, int]) -> BadBlock | None:
        try:
            d.read_block(*origin)
        except (BlockfsError, OSError) as e:
            return BadBlock(origin, str(e))
        return None

    bad = []
    for result in bounded_map(check, origins, n_threads or os.cpu_count() or 1):
        if result is not None:
            bad.append(result)
        if progress is not None:
            progress(1)
    return bad
