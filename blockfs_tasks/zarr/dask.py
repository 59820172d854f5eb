"""``to_dask``: a dask array over a blockfs volume or a pyramid level, one dask chunk per block, without zarr.

``Directory.to_dask()`` is the same for an open volume (:mod:`blockfs_tasks.core.dask_array`).
"""

from __future__ import annotations

import os
from typing import Any

from ..core.dask_array import dask_array
from ..core.directory import Directory
from ..pyramid.layout import Pyramid, is_pyramid


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
    if isinstance(volume, Directory):
        directory = volume
    else:
        path = os.fspath(volume)
        directory = Pyramid.from_info(path).open(level) if is_pyramid(path) else Directory.open(path)
    return dask_array(directory, name)
