"""The HTTP ``/zarr/`` route as a plain function: a key in, (status, headers, body) out.

``blockfs-serve`` maps ``GET /zarr/<key>`` to :func:`zarr_http_response` (and
adds its CORS headers); ``HEAD`` sends the same headers without the body.
Interior chunks are the stored frames, sent verbatim; a block never written
is 404, which every zarr client (zarr-python over fsspec, tensorstore,
ome-zarr-py, Neuroglancer) reads as the fill value.
"""

from __future__ import annotations

from urllib.parse import unquote

from typing import Any

from .view import ZarrView

Response = tuple[int, list[tuple[str, str]], bytes]
ROUTE_PREFIX = "/zarr/"


def zarr_http_response(source: ZarrView | Any, key: str) -> Response:
    """The response to ``GET /zarr/<key>``: 200 with the bytes, or 404 for an absent key.

    ``source`` is a :class:`ZarrView` or a ``BlockfsStore``; ``key`` is the URL path after ``/zarr/`` (percent-escapes are decoded; a
    query string must be removed by the caller).
    """
    view: ZarrView = source if isinstance(source, ZarrView) else source.view  # a BlockfsStore
    key = unquote(key).lstrip("/")
    data = view.get(key) if key and ".." not in key.split("/") else None
    if data is None:
        body = f"no such key: {key}\n".encode()
        return 404, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))], body
    kind = "application/json" if key in view.documents else "application/octet-stream"
    return 200, [("Content-Type", kind), ("Content-Length", str(len(data)))], data
