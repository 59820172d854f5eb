"""An HTTP server for Neuroglancer: a blockfs volume or pyramid as a precomputed source.

Standard library only (:class:`http.server.ThreadingHTTPServer`): each
connection gets a thread, and block reads (pread + Blosc) and gzip release the
GIL, so requests are served in parallel. HTTP/1.1 keep-alive. Every response,
errors included, carries CORS headers (Neuroglancer runs in a browser on
another origin). Only ``/info``, ``/provenance`` (cloud-volume's shape, see
:mod:`..core.provenance`) and exact chunk names resolve
(:meth:`PrecomputedVolume.resolve`); anything else, never-written chunks
included, is 404; a chunk name no chunk can have (a
5,000-digit coordinate) is 400. A volume whose directory file changes is
reopened on the next request. Binds 127.0.0.1 unless told otherwise.

:class:`CorsHandler` and :class:`CorsServer` are shared with the static tree
server (:mod:`.static_server`).
"""

from __future__ import annotations

import gzip
import logging
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from ..core.errors import BadRequestError, BlockfsError, ConfigurationError
from ..zarr.route import zarr_http_response, zarr_route_key
from ..zarr.view import ZarrView
from .precomputed import PrecomputedVolume

logger = logging.getLogger(__name__)

CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
    ("Access-Control-Allow-Headers", "*"),
    ("Access-Control-Expose-Headers", "Content-Length, Content-Encoding, Content-Type, Content-Range, Accept-Ranges"),
    ("Access-Control-Max-Age", "86400"),
)


def gzip_compressor(level: int) -> Callable[[bytes], bytes]:
    """A gzip function for ``level`` 1-9: ISA-L's igzip when installed (``pip install isal``), else zlib.

    igzip is 4-5x faster than zlib at level 1 for the same size on microscopy
    data (levels above 3 are ISA-L's 3). Both release the GIL.
    """
    try:
        from isal import igzip
    except ImportError:
        return lambda data: gzip.compress(data, compresslevel=level, mtime=0)
    isal_level = min(level, 3)
    return lambda data: igzip.compress(data, isal_level, mtime=0)


def accepts_gzip(header: str | None) -> bool:
    """True when an ``Accept-Encoding`` header allows gzip (``q=0`` refuses it)."""
    if not header:
        return False
    allowed: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        allowed[name.strip().lower()] = q
    if "gzip" in allowed:
        return allowed["gzip"] > 0
    return allowed.get("*", 0.0) > 0


class CorsHandler(BaseHTTPRequestHandler):
    """GET / HEAD / OPTIONS with CORS headers on every response; subclasses define ``_respond``."""

    protocol_version = "HTTP/1.1"
    # Answer malformed request lines with a status line and headers (CORS included),
    # not the header-less replies of HTTP/0.9, which no client of ours speaks.
    default_request_version = "HTTP/1.0"
    server_version = "blockfs-serve"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go in two writes: don't wait for an ACK between them

    def end_headers(self) -> None:
        """Add the CORS headers to every response, errors included."""
        for name, value in CORS_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # 'format' shadows the builtin: the base's signature
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_OPTIONS(self) -> None:  # do_<METHOD>: http.server's naming
        """CORS preflight."""
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # the request body, if any, is left unread
        allow = [("Allow", "GET, HEAD, OPTIONS")]
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", "text/plain", True, allow)

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _respond(self, body: bool) -> None:
        raise NotImplementedError

    def _send(
        self,
        status: HTTPStatus,
        data: bytes,
        content_type: str,
        body: bool,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra or []:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self._write(data)

    def _write(self, data: bytes) -> bool:
        """Write body bytes; False (and the connection closed) when the client went away."""
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client %s went away", self.address_string())
            self.close_connection = True
            return False
        return True


class PrecomputedHandler(CorsHandler):
    """GET / HEAD / OPTIONS over a :class:`PrecomputedVolume` (the server's ``source``)."""

    server: PrecomputedServer

    def _respond(self, body: bool) -> None:
        raw_path = urlsplit(self.path).path
        zarr_key = zarr_route_key(raw_path) if self.server.zarr_view is not None else None
        if zarr_key is not None:
            self._respond_zarr(zarr_key, body)
            return
        path = unquote(raw_path)
        try:
            data = self.server.source.resolve(path)
        except BadRequestError as e:
            self._send(HTTPStatus.BAD_REQUEST, f"bad request: {e}\n".encode(), "text/plain", body)
            return
        except Exception:  # a corrupt block must not kill the connection silently
            logger.exception("error serving %s", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain", body)
            return
        if data is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body)
            return
        content_type = "application/json" if path in ("/info", "/provenance") else "application/octet-stream"
        extra = [("Vary", "Accept-Encoding")]
        compress = self.server.compress
        if compress is not None and accepts_gzip(self.headers.get("Accept-Encoding")):
            data = compress(data)
            extra.append(("Content-Encoding", "gzip"))
        self._send(HTTPStatus.OK, data, content_type, body, extra)


    def _respond_zarr(self, key: str, body: bool) -> None:
        """``/zarr/<key>``: the OME-Zarr view of the same volume; interior chunks are the stored frames."""
        try:
            status, headers, data = zarr_http_response(self.server.zarr_view, key)
        except BlockfsError as e:  # e.g. a frame whose checksum fails: an error, never wrong data
            logger.error("error serving /zarr/%s: %s", key, e)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain", body)
            return
        content_type = dict(headers).get("Content-Type", "application/octet-stream")
        extra = [(k, v) for k, v in headers if k not in ("Content-Type", "Content-Length")]
        self._send(HTTPStatus(status), data, content_type, body, extra)


class CorsServer(ThreadingHTTPServer):
    """A threading HTTP server for Neuroglancer clients: many connections, quiet logs, a source URL."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up shutdown
    # Clients open dozens of connections at once (tensorstore ~32); the default
    # backlog of 5 drops their SYNs, which cost a 1 s retransmit each.
    request_queue_size = 128

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """Log a failed connection (the base class prints it to stderr)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %r", client_address, error)
        else:
            logger.exception("error serving %s", client_address)

    @property
    def port(self) -> int:
        """The port bound (the real one when 0 was asked for)."""
        return int(self.server_address[1])

    def url(self) -> str:
        """The Neuroglancer source URL: ``precomputed://http://host:port``."""
        host = self.server_address[0]
        if isinstance(host, (bytes, bytearray)):  # typeshed allows it; an AF_INET(6) socket gives a str
            host = host.decode()
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"precomputed://http://{host}:{self.port}"


class PrecomputedServer(CorsServer):
    """A threading HTTP server holding the source it serves."""

    def __init__(
        self,
        address: tuple[str, int],
        source: PrecomputedVolume,
        gzip_level: int = 1,
        zarr_view: ZarrView | None = None,
    ) -> None:
        self.source = source
        self.zarr_view = zarr_view
        self.gzip_level = gzip_level
        self.compress = gzip_compressor(gzip_level) if gzip_level else None
        super().__init__(address, PrecomputedHandler)


def check_port(port: int) -> None:
    """Raise :class:`ConfigurationError` unless ``port`` is a TCP port number (0: any free one)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"Expected a port from the inclusive range (0, 65535). Got {port!r} instead.")


def make_server(
    source: PrecomputedVolume,
    host: str = "127.0.0.1",
    port: int = 0,
    gzip_level: int = 1,
    zarr_view: ZarrView | None = None,
) -> PrecomputedServer:
    """Bind a server for ``source`` on ``host:port`` (port 0: a free one); call ``serve_forever``.

    ``gzip_level`` 0 turns gzip off; 1 (the default) is fastest (see :func:`gzip_compressor`).
    With ``zarr_view``, the same volume is also an OME-Zarr group under ``/zarr/``
    (and ``/blockfs.zarr/`` for napari).
    """
    check_port(port)
    if not 0 <= gzip_level <= 9:
        raise ConfigurationError(f"Expected a gzip level from the inclusive range (0, 9). Got {gzip_level!r} instead.")
    server = PrecomputedServer((host, port), source, gzip_level, zarr_view)
    logger.info("serving %d scale(s) at %s", len(source.scales), server.url())
    return server


class BackgroundServer:
    """A server running in a daemon thread; a context manager that stops it on exit.

    ``source`` is a :class:`PrecomputedVolume`, or an already bound :class:`CorsServer`.
    """

    def __init__(
        self, source: PrecomputedVolume | CorsServer, host: str = "127.0.0.1", port: int = 0, gzip_level: int = 1
    ) -> None:
        self.server = source if isinstance(source, CorsServer) else make_server(source, host, port, gzip_level)
        self._thread = threading.Thread(target=self.server.serve_forever, name="blockfs-serve", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the server."""
        return self.server.url().removeprefix("precomputed://")

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
