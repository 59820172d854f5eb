"""Optional dependencies, imported when first needed, with an error that says what to install.

    h5py = require("h5py", extra=None, purpose="HDF5 export")
    zarr = require("zarr", extra="zarr", purpose="the zarr view")

A missing module raises :class:`~.errors.MissingDependencyError` naming the
pip extra (``pip install 'blockfs_tasks[zarr]'``) or the package to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str | None, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it.

    ``extra`` is the blockfs_tasks extra that brings it (None for a declared
    dependency, which only a broken install lacks); ``package`` is its PyPI
    name when that differs from the module's.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        wanted = f"'blockfs_tasks[{extra}]'" if extra else (package or module.split(".")[0])
        raise MissingDependencyError(
            f"{purpose} needs the Python package {package or module.split('.')[0]!r}, which is not "
            f"installed here ({e}): pip install {wanted}"
        ) from e
