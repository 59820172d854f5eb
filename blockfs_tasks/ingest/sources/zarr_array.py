"""Zarr sources (``zarr``): a zarr v2 or v3 array, or an array inside a zarr group.

Named ``zarr_array`` so that it is never mistaken for the zarr library itself.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np

from ...core.optional import require
from ..errors import SourceError
from .base import Source, check_dtype, extension, is_volume, volume_shape

logger = logging.getLogger(__name__)

ZARR_KEY = re.compile(r"^(?P<path>.+?\.zarr)/?:(?P<key>.*)$", re.IGNORECASE)
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


class ZarrSource(Source):
    """A zarr v2 or v3 array (or an array inside a group), via zarr-python 3."""

    kind = "zarr"
    _TRANSIENT = ("_array",)

    def __init__(self, path: str, key: str | None = None) -> None:
        super().__init__(path)
        self.key = key or None
        arr, self.key, self.shape, self.dtype, self._lead = self._probe()
        self._array = arr
        logger.debug("opened %s", self.describe())

    def _detail(self) -> str:
        return f"array {self.key!r}" if self.key else ""

    def _probe(self) -> tuple[Any, str | None, tuple[int, int, int], np.dtype, int]:
        zarr = require("zarr", extra="zarr", purpose="Reading a zarr source")
        path, key = self.path, self.key
        if not os.path.isdir(path):
            raise SourceError(f"{path}: no such zarr store (folder)")
        try:
            node = zarr.open(path, mode="r")
        except Exception as e:
            raise SourceError(f"{path}: not a readable zarr array or group ({e})") from e
        if isinstance(node, zarr.Group):
            arrays = [
                (name, a) for name, a in node.members(max_depth=None)
                if isinstance(a, zarr.Array) and is_volume(a.shape)
            ]
            listed = ", ".join(f"{n} {a.shape}" for n, a in arrays) or "none"
            if key:
                try:
                    node = node[key.strip("/")]
                except KeyError:
                    raise SourceError(
                        f"{path}: {key!r} does not exist; 3D arrays in the group: {listed}"
                    ) from None
                if isinstance(node, zarr.Group):
                    raise SourceError(
                        f"{path}: {key!r} is a group, not an array; 3D arrays in it: {listed}"
                    )
            elif len(arrays) == 1:
                key, node = arrays[0]
            else:
                raise SourceError(
                    f"{path}: is a zarr group with {len(arrays)} 3D arrays ({listed}); "
                    f"name one as '{path}:path/to/array'"
                )
        elif key:
            raise SourceError(f"{path}: is a zarr array, not a group; drop ':{key}'")
        where = f"{path}:{key}" if key else path
        zyx, lead = volume_shape(node.shape, where)
        dtype = check_dtype(node.dtype, where)
        return node, key, zyx, dtype, lead

    def _handle(self) -> Any:
        self._forget_after_fork()
        if self._array is None:
            arr, _, shape, dtype, _ = self._probe()
            self._check_reopened(shape, dtype)
            self._array = arr
        return self._array

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        arr = self._handle()
        sel = (0,) * self._lead + (slice(z0, z1), slice(y0, y1), slice(None))
        try:
            data = arr[sel]
        except Exception as e:  # corrupt or missing chunk files, codec errors
            raise SourceError(f"{self.path}: cannot read {sel} ({e})") from e
        return np.asarray(data)


def is_zarr_dir(path: str) -> bool:
    """True if the folder ``path`` is a zarr store: named ``*.zarr`` or holding zarr metadata."""
    return extension(path) == ".zarr" or any(
        os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS
    )
