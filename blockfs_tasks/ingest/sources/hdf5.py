"""HDF5 sources (``hdf5``): one dataset of an HDF5 file, read with hyperslab selections."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np

from ...core.optional import require
from ..errors import SourceError
from .base import Source, check_dtype, is_volume, volume_shape

logger = logging.getLogger(__name__)

HDF5_EXTS = (".h5", ".hdf5", ".hdf")
HDF5_KEY = re.compile(r"^(?P<path>.+?\.(?:h5|hdf5|hdf)):(?P<key>.*)$", re.IGNORECASE)


class HDF5Source(Source):
    """A dataset of an HDF5 file, read with h5py hyperslab selections."""

    kind = "hdf5"
    _TRANSIENT = ("_file", "_dataset")

    def __init__(self, path: str, key: str | None = None) -> None:
        super().__init__(path)
        self.key = key
        f, ds, self.key, self.shape, self.dtype, self._lead = self._probe()
        self._file, self._dataset = f, ds
        logger.debug("opened %s", self.describe())

    def describe(self) -> str:
        z, y, x = self.shape
        return (
            f"{self.kind} {self.path!r} dataset {self.key!r}: shape (z, y, x) = "
            f"({z}, {y}, {x}), dtype {self.dtype.name}"
        )

    def _probe(self) -> tuple[Any, Any, str, tuple[int, int, int], np.dtype, int]:
        h5py = require("h5py", extra=None, purpose="Reading an HDF5 source")
        path = self.path
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such file")
        try:
            f = h5py.File(path, "r")
        except Exception as e:
            raise SourceError(f"{path}: not a readable HDF5 file ({e})") from e
        try:
            name, ds = self._find_dataset(h5py, f)
            where = f"{path}:{name}"
            zyx, lead = volume_shape(ds.shape, where)
            dtype = check_dtype(ds.dtype, where)
        except Exception:
            f.close()
            raise
        return f, ds, name, zyx, dtype, lead

    def _find_dataset(self, h5py: Any, f: Any) -> tuple[str, Any]:
        path, key = self.path, self.key
        found: list[tuple[str, Any]] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and is_volume(obj.shape):
                found.append(("/" + name, obj))

        if key:
            try:
                obj = f[key]
            except (KeyError, ValueError):
                obj = None
            if isinstance(obj, h5py.Dataset):
                return obj.name, obj
            f.visititems(visit)
            listed = ", ".join(f"{n} {o.shape}" for n, o in found) or "none"
            problem = "is a group, not a dataset" if obj is not None else "does not exist"
            raise SourceError(f"{path}: {key!r} {problem}; 3D datasets in the file: {listed}")
        f.visititems(visit)
        if len(found) == 1:
            return found[0]
        if not found:
            others: list[str] = []
            f.visititems(
                lambda n, o: others.append(f"/{n} {o.shape}")
                if isinstance(o, h5py.Dataset) else None
            )
            raise SourceError(
                f"{path}: holds no 3D dataset (datasets: {', '.join(others) or 'none'})"
            )
        listed = ", ".join(f"{n} {o.shape}" for n, o in found)
        raise SourceError(
            f"{path}: holds {len(found)} 3D datasets ({listed}); name one as '{path}:/name'"
        )

    def _handle(self) -> Any:
        self._forget_after_fork()
        if self._dataset is None:
            f, ds, _, shape, dtype, _ = self._probe()
            try:
                self._check_reopened(shape, dtype)
            except SourceError:
                f.close()
                raise
            self._file, self._dataset = f, ds
        return self._dataset

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        ds = self._handle()
        out = np.empty((z1 - z0, y1 - y0, self.shape[2]), dtype=self.dtype)
        sel = (0,) * self._lead + (slice(z0, z1), slice(y0, y1), slice(None))
        try:
            ds.read_direct(out, source_sel=sel)
        except Exception as e:  # corrupt chunk, missing filter plugin...
            raise SourceError(f"{self.path}:{self.key}: cannot read {sel} ({e})") from e
        return out
