"""Real servers on loopback for the remote tests and the benchmark: moto's S3 server, a counting proxy, HTTP Range.

Nothing here is a mock: ``moto_server`` is the S3 server a user can run, the
proxy forwards every byte to it and only counts, and the web server is
``RangeHTTPServer``'s handler (what ``python -m RangeHTTPServer`` serves).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from RangeHTTPServer import RangeRequestHandler

#: Credentials moto accepts (any); set for every client and subprocess of the tests.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
START_TIMEOUT = 60  # seconds for moto_server to accept connections (an upper bound, not a measurement)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Block until ``port`` accepts connections (or the process died: an error)."""
    import time

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # waiting for the server to come up, no assertion depends on it
    raise RuntimeError(f"moto_server did not listen on {port} within {START_TIMEOUT} s")


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT`` in a subprocess: a real S3 endpoint on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self.process = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **S3_ENV},
        )
        try:
            _wait_listening(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def s3_options(endpoint: str) -> dict[str, Any]:
    """fsspec storage_options of s3fs for a loopback endpoint."""
    return {"endpoint_url": endpoint, "key": S3_ENV["AWS_ACCESS_KEY_ID"], "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    body_bytes: int


@dataclass
class RequestLog:
    """Every request a server answered (thread-safe)."""

    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def take(self) -> list[Request]:
        """The requests so far, and start a new count."""
        with self.lock:
            out, self.requests = self.requests, []
        return out


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = self.server.connection()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        # counted before the client gets its answer, so a count read right after a call includes it
        self.server.log.add(Request(self.command, self.path, self.headers.get("Range"), len(data)))
        self.send_response_only(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"):
                self.send_header(k, v)
        upstream_length = response.getheader("Content-Length")  # a HEAD answer's length is the object's
        length = upstream_length if self.command == "HEAD" and upstream_length else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.log = RequestLog()
        self._local = threading.local()

    def connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port)
        return conn


class CountingProxy:
    """An HTTP proxy in front of a server on loopback that counts each request and the bytes answered."""

    def __init__(self, upstream_port: int) -> None:
        self.server = _ProxyServer(upstream_port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def log(self) -> RequestLog:
        return self.server.log

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RangeHandler(RangeRequestHandler):
    server: RangeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # counted before answering (a count read right after a call includes it)
        self.server.log.add(Request("GET", self.path, self.headers.get("Range"), 0))
        super().do_GET()

    def do_HEAD(self) -> None:
        self.server.log.add(Request("HEAD", self.path, None, 0))
        super().do_HEAD()


class RangeServer(ThreadingHTTPServer):
    """A static web server with HTTP Range (RangeHTTPServer's handler) over ``root``, counting requests."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.log = RequestLog()
        handler = lambda *a, **k: _RangeHandler(*a, directory=self.root, **k)  # noqa: E731
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
