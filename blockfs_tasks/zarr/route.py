"""The HTTP ``/zarr/`` route as a plain function: a key in, (status, headers, body) out.

``blockfs-serve`` maps ``GET /zarr/<key>`` (and ``/blockfs.zarr/<key>``, see
:func:`zarr_route_key`) to :func:`zarr_http_response` and adds its CORS
headers; ``HEAD`` sends the same headers without the body.
Interior chunks are the stored frames, sent verbatim; a block never written
is 404, which every zarr client (zarr-python over fsspec, tensorstore,
ome-zarr-py, Neuroglancer) reads as the fill value.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .view import ZarrView

Response = tuple[int, list[tuple[str, str]], bytes]
#: URL prefixes of the group: ``/zarr/``, and ``/blockfs.zarr/`` for napari, whose
#: napari-ome-zarr reader only accepts URLs that contain ".zarr".
ROUTE_PREFIXES = ("/zarr/", "/blockfs.zarr/")


def zarr_route_key(url_path: str) -> str | None:
    """The store key of a URL path under one of :data:`ROUTE_PREFIXES` (query removed), else None.

    ``/zarr`` and ``/zarr/`` themselves map to ``""`` (404: a group has no value at its root).
    """
    for prefix in ROUTE_PREFIXES:
        if url_path.startswith(prefix):
            return url_path[len(prefix) :]
        if url_path == prefix.rstrip("/"):
            return ""
    return None


def zarr_http_response(source: ZarrView | Any, key: str) -> Response:
    """The response to ``GET /zarr/<key>``: 200 with the bytes, or 404 for an absent key.

    ``source`` is a :class:`ZarrView` or a ``BlockfsStore``; ``key`` is the URL path after ``/zarr/``
    (percent-escapes are decoded; a query string must be removed by the caller).
    """
    view: ZarrView = source if isinstance(source, ZarrView) else source.view  # a BlockfsStore
    key = unquote(key).lstrip("/")
    data = view.get(key) if key and ".." not in key.split("/") else None
    if data is None:
        body = f"no such key: {key}\n".encode()
        return 404, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))], body
    kind = "application/json" if key in view.documents else "application/octet-stream"
    return 200, [("Content-Type", kind), ("Content-Length", str(len(data)))], bytes(data)
