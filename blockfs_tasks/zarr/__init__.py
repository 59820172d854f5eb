"""zarr / OME-Zarr views of blockfs volumes and pyramids, without copying the blocks.

* :class:`BlockfsStore` — a read-only ``zarr.abc.store.Store`` (zarr-python 3).
* :func:`to_dask` — a dask array over a volume, one dask chunk per block.
* :func:`write_references` — a kerchunk / fsspec ``ReferenceFileSystem`` JSON.
* :func:`zarr_http_response` — the HTTP ``/zarr/`` route as a plain function.

zarr and dask are optional dependencies (``pip install blockfs_tasks[zarr]``);
only :class:`BlockfsStore` imports zarr, on first use.
"""

from __future__ import annotations

from typing import Any

from .dask import to_dask
from .refs import RefsSummary, write_references
from .route import zarr_http_response, zarr_route_key
from .view import ZarrView

__all__ = [
    "BlockfsStore",
    "RefsSummary",
    "ZarrView",
    "to_dask",
    "write_references",
    "zarr_http_response",
    "zarr_route_key",
]


def __getattr__(name: str) -> Any:
    """Import the zarr-dependent parts on first use (``pip install 'zarr>=3'``)."""
    if name == "BlockfsStore":
        try:
            from .store import BlockfsStore
        except ImportError as e:
            from ..core.errors import MissingLibraryError

            raise MissingLibraryError("BlockfsStore needs zarr-python 3: pip install 'zarr>=3'") from e
        return BlockfsStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
