"""``to_dask``: a dask array over a blockfs volume, one dask chunk per block, without zarr.

The wiring for ``Directory.to_dask()`` is one line: ``return to_dask(self)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..core.directory import Directory
from ..core.errors import MissingLibraryError
from ..pyramid.layout import Pyramid, is_pyramid


def _read(directory: Directory, block_id: tuple[int, int, int]) -> np.ndarray:
    """The (z, y, x) block at dask chunk ``block_id`` (zeros if never written)."""
    bz, by, bx = directory.grid.block_shape
    iz, iy, ix = block_id
    return directory.read_block(ix * bx, iy * by, iz * bz)


def to_dask(volume: Directory | str | os.PathLike[str], level: int = 0, name: str | None = None) -> Any:
    """A lazy ``dask.array.Array`` (z, y, x) over a volume; each dask chunk is one block.

    Parameters
    ----------
    volume
        An open :class:`Directory`, a ``.blockfs`` directory file, or a pyramid folder.
    level
        The pyramid level when ``volume`` is a pyramid folder.
    name
        The dask graph name (default: derived from the path and level, so two
        calls over the same volume share tasks).
    """
    try:
        import dask.array as da
        from dask.base import tokenize
    except ImportError as e:
        raise MissingLibraryError("to_dask needs dask: pip install 'dask[array]'") from e
    if isinstance(volume, Directory):
        directory = volume
    else:
        path = os.fspath(volume)
        directory = Pyramid.from_info(path).open(level) if is_pyramid(path) else Directory.open(path)
    chunks = tuple(
        tuple(min(b, n - i) for i in range(0, n, b)) for n, b in zip(directory.shape, directory.grid.block_shape)
    )
    path = directory.directory_filename
    token = name or "blockfs-" + tokenize(path, os.path.getmtime(path), directory.shape, directory.dtype.str)

    def read(block_id: tuple[int, int, int] | None = None) -> np.ndarray:
        return _read(directory, block_id)  # type: ignore[arg-type]

    return da.map_blocks(read, dtype=directory.dtype, chunks=chunks, name=token, meta=np.empty((0, 0, 0), directory.dtype))
