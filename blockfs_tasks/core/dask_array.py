"""A lazy dask array over a volume: one dask chunk per block, read with ``read_block``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .grid import ZYX
from .optional import require

if TYPE_CHECKING:
    from .directory import Directory


def _read_block(directory: Directory, block_id: ZYX) -> np.ndarray:
    """The (z, y, x) block at dask chunk ``block_id`` (zeros if never written)."""
    bz, by, bx = directory.grid.block_shape
    iz, iy, ix = block_id
    return directory.read_block(ix * bx, iy * by, iz * bz)


def dask_array(directory: Directory, name: str | None = None) -> Any:
    """A ``dask.array.Array`` (z, y, x) over ``directory``; its chunks are the blocks.

    ``name`` is the dask graph name; by default it is derived from the path,
    the directory file's modification time, shape and dtype, so two calls over
    the same volume share tasks and a rewritten volume gets new ones.
    """
    da = require("dask.array", extra="zarr", purpose="Directory.to_dask()", package="dask")
    tokenize = require("dask.base", extra="zarr", purpose="Directory.to_dask()", package="dask").tokenize
    chunks = tuple(
        tuple(min(b, n - i) for i in range(0, n, b))
        for n, b in zip(directory.shape, directory.grid.block_shape, strict=True)
    )
    path = directory.directory_filename
    token = name or "blockfs-" + tokenize(path, os.path.getmtime(path), directory.shape, directory.dtype.str)

    def read(block_id: ZYX | None = None) -> np.ndarray:
        return _read_block(directory, block_id)  # type: ignore[arg-type]  # dask passes block_id

    return da.map_blocks(
        read, dtype=directory.dtype, chunks=chunks, name=token, meta=np.empty((0, 0, 0), directory.dtype)
    )
