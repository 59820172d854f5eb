"""``.npy`` sources (``npy``): a 3D ``.npy`` file, memory-mapped read-only."""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import SourceError
from .base import Source, check_dtype, volume_shape

logger = logging.getLogger(__name__)


class NpySource(Source):
    """A 3D ``.npy`` file, memory-mapped read-only."""

    kind = "npy"
    _TRANSIENT = ("_array",)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        arr, self.shape, self.dtype, self._lead = self._probe()
        self._array = arr
        logger.debug("opened %s", self.describe())

    def _probe(self) -> tuple[np.ndarray, tuple[int, int, int], np.dtype, int]:
        path = self.path
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such file")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # bad magic, truncated data, object arrays
            raise SourceError(f"{path}: not a readable .npy file ({e})") from e
        if not isinstance(arr, np.ndarray):
            raise SourceError(f"{path}: is not a .npy array file")
        zyx, lead = volume_shape(arr.shape, path)
        dtype = check_dtype(arr.dtype, path)
        return arr, zyx, dtype, lead

    def _handle(self) -> np.ndarray:
        self._forget_after_fork()
        if self._array is None:
            arr, shape, dtype, _ = self._probe()
            self._check_reopened(shape, dtype)
            self._array = arr
        return self._array

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        arr = self._handle()
        view = arr[(0,) * self._lead + (slice(z0, z1), slice(y0, y1))]
        try:
            return np.array(view, dtype=self.dtype, order="C")
        except OSError as e:  # the file shrank under the mapping (SIGBUS is not catchable)
            raise SourceError(f"{self.path}: cannot read planes [{z0}, {z1}) ({e})") from e
