"""Serving a static precomputed tree (``blockfs-serve --static DIR``) the way Neuroglancer needs it.

A plain file server is not enough for the trees :mod:`.static` writes:

- Neuroglancer runs in a browser on another origin: every response, errors
  included, needs CORS headers;
- sharded trees are read by byte ranges of the shard files: HTTP ``Range``
  (206, ``Content-Range``; 416 past the end);
- ``--gzip`` unsharded trees hold ``<chunk>.gz`` files while clients ask for
  ``<chunk>``: the ``.gz`` file is sent with ``Content-Encoding: gzip`` (or
  decompressed for a client that does not accept gzip, and for a range);
- a missing chunk must be 404 (clients read it as zeros), never 200 with an
  empty body; folders are 404 too (no listings).

Only regular files under the tree's folder are served: ``..``, empty and ``.``
path segments, NUL bytes and symbolic links that lead out of the folder are 404.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from http import HTTPStatus
from typing import Literal
from urllib.parse import unquote, urlsplit

from ..core.errors import ConfigurationError
from .server import CorsHandler, CorsServer, accepts_gzip, check_port

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_STREAM_CHUNK = 1 << 20


def resolve_static(root: str, url_path: str) -> tuple[str, bool] | None:
    """The file serving ``url_path`` (percent-decoded) under ``root`` and whether it is a ``.gz`` stand-in.

    ``root`` must be a real path (no symbolic links). None when nothing may be served.
    """
    parts = url_path.removeprefix("/").split("/")
    if any(p in ("", ".", "..") or "\x00" in p or "\\" in p for p in parts):
        return None
    path = os.path.join(root, *parts)
    for candidate, gzipped in ((path, False), (path + ".gz", True)):
        real = os.path.realpath(candidate)
        if os.path.commonpath([root, real]) == root and os.path.isfile(real):
            return real, gzipped
    return None


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """A single ``bytes=`` range of a ``size``-byte body as [start, end); None: whole body; False: unsatisfiable.

    Multiple ranges and malformed headers are ignored (the whole body is
    sent, as RFC 9110 allows).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix: the last N bytes
        n = int(match[2])
        return (max(size - n, 0), size) if n > 0 and size > 0 else False
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if match[2] and int(match[2]) < start:
        return None
    if start >= size:
        return False
    return start, end


class StaticTreeHandler(CorsHandler):
    """GET / HEAD / OPTIONS over the files of a static precomputed tree (the server's ``root``)."""

    server: StaticTreeServer

    def _respond(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        found = resolve_static(self.server.root, path)
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body)
            return
        file, gzipped = found
        content_type = "application/json" if os.path.basename(path) == "info" else "application/octet-stream"
        try:
            if gzipped:
                self._send_gzipped(file, content_type, body)
            else:
                self._send_file(file, content_type, body)
        except OSError:
            logger.exception("error serving %s", file)
            self.close_connection = True

    def _send_gzipped(self, file: str, content_type: str, body: bool) -> None:
        with open(file, "rb") as f:
            packed = f.read()
        extra = [("Vary", "Accept-Encoding")]
        if accepts_gzip(self.headers.get("Accept-Encoding")) and not self.headers.get("Range"):
            self._send(HTTPStatus.OK, packed, content_type, body, [*extra, ("Content-Encoding", "gzip")])
            return
        data = gzip.decompress(packed)
        wanted = parse_range(self.headers.get("Range"), len(data))
        if wanted is False:
            self._unsatisfiable(len(data), body)
        elif wanted is None:
            self._send(HTTPStatus.OK, data, content_type, body, [*extra, ("Accept-Ranges", "bytes")])
        else:
            start, end = wanted
            self._send(HTTPStatus.PARTIAL_CONTENT, data[start:end], content_type, body,
                       [*extra, ("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")])

    def _send_file(self, file: str, content_type: str, body: bool) -> None:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            wanted = parse_range(self.headers.get("Range"), size)
            if wanted is False:
                self._unsatisfiable(size, body)
                return
            start, end = (0, size) if wanted is None else wanted
            self.send_response(HTTPStatus.OK if wanted is None else HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            if wanted is not None:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if not body:
                return
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(left, _STREAM_CHUNK))
                if not chunk or not self._write(chunk):
                    self.close_connection = True  # the file shrank, or the client left: the length is now wrong
                    return
                left -= len(chunk)

    def _unsatisfiable(self, size: int, body: bool) -> None:
        self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"range not satisfiable\n", "text/plain", body,
                   [("Content-Range", f"bytes */{size}")])


class StaticTreeServer(CorsServer):
    """A threading HTTP server for one static precomputed tree."""

    def __init__(self, address: tuple[str, int], root: str) -> None:
        self.root = os.path.realpath(root)
        super().__init__(address, StaticTreeHandler)


def make_static_server(folder: str, host: str = "127.0.0.1", port: int = 0) -> StaticTreeServer:
    """Bind a server for the static precomputed tree in ``folder`` (it must hold an ``info``)."""
    check_port(port)
    if not os.path.isfile(os.path.join(folder, "info")):
        raise ConfigurationError(
            f"{folder} is not a static precomputed tree (no info file); write one with blockfs-precomputed"
        )
    server = StaticTreeServer((host, port), folder)
    logger.info("serving the static tree %s at %s", server.root, server.url())
    return server
