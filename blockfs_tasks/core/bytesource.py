"""Byte sources: where a reader gets byte ranges of a volume's files, local or remote.

A reader asks for ``read(name, offset, size)`` (one ``pread`` locally, one
ranged GET remotely) and ``read_many`` (many ranges at once, fetched
concurrently remotely). ``name`` is a path for :class:`LocalSource` and a URL
(``s3://bucket/key``, ``gs://...``, ``https://...``) for :class:`FsspecSource`,
which goes through fsspec with the caller's ``storage_options`` as they are
(as zarr, xarray and pandas pass them). Both return at most ``size`` bytes:
fewer only where the file ends, so callers say what was cut short.

Remote sources are read-only: nothing here writes.
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
from collections.abc import Sequence
from typing import Any

from .errors import MissingFileError, RemoteReadError
from .optional import require

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

#: The pip extra that brings each protocol's fsspec implementation.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}
_PACKAGES = {"s3": "s3fs", "gcs": "gcsfs", "http": "aiohttp"}

Range = tuple[str, int, int]  # (name, offset, size)


def url_protocol(path: str | os.PathLike[str]) -> str | None:
    """The protocol of a URL (``"s3"``, ``"https"``...), or None for a local path (``file://`` included)."""
    match = _URL.match(os.fspath(path)) if isinstance(path, str) else None
    if match is None or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL read through fsspec (anything with a ``scheme://`` but ``file://``)."""
    return url_protocol(path) is not None


def local_path(path: str | os.PathLike[str]) -> str:
    """A local path as given, or the path of a ``file://`` URL."""
    text = os.fspath(path)
    return text[len("file://") :] if text.startswith("file://") else text


def join_url(directory_url: str, name: str) -> str:
    """The URL of ``name`` (relative, or a bare file name) beside the object ``directory_url``."""
    folder = directory_url.rsplit("/", 1)[0]
    return f"{folder}/{posixpath.basename(name) if name.startswith('/') else name}"


class ByteSource:
    """Byte ranges of a volume's files; the base class reads nothing by itself."""

    remote = False

    def read(self, name: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of ``name`` from ``offset`` (fewer only at the end of the file)."""
        raise NotImplementedError

    def read_many(self, ranges: Sequence[Range]) -> list[bytes]:
        """:meth:`read` of each ``(name, offset, size)``, in order."""
        return [self.read(name, offset, size) for name, offset, size in ranges]

    def size(self, name: str) -> int:
        """Length of ``name`` in bytes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds open (idempotent)."""


class LocalSource(ByteSource):
    """Local files through ``os.pread`` (no shared file position: threads and forked children share it).

    Descriptors are opened on first use and kept until :meth:`close`.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def fd(self, name: str) -> int:
        """The read-only descriptor of ``name``, opened on first use."""
        fd = self._fds.get(name)
        if fd is None:
            with self._lock:
                fd = self._fds.get(name)
                if fd is None:
                    try:
                        fd = os.open(name, os.O_RDONLY)
                    except FileNotFoundError as e:
                        raise MissingFileError(f"{name}: block file is missing") from e
                    self._fds[name] = fd
        return fd

    def read(self, name: str, offset: int, size: int) -> bytes:
        return os.pread(self.fd(name), size, offset)

    def size(self, name: str) -> int:
        return os.stat(name).st_size

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _filesystem(protocol: str, storage_options: dict[str, Any]) -> Any:
    """The fsspec filesystem of ``protocol`` made with ``storage_options`` as given."""
    extra = _EXTRAS.get(protocol)
    fsspec = require("fsspec", extra=extra, purpose=f"reading {protocol}:// volumes")
    try:
        return fsspec.filesystem(protocol, **storage_options)
    except ImportError as e:
        package = _PACKAGES.get(extra or "", protocol)
        wanted = f"'blockfs_tasks[{extra}]'" if extra else package
        raise RemoteReadError(
            f"reading {protocol}:// volumes needs the Python package {package!r}, which is not installed "
            f"here ({e}): pip install {wanted}"
        ) from e
    except ValueError as e:  # fsspec: unknown protocol
        raise RemoteReadError(f"{protocol}:// is not a protocol fsspec knows: {e}") from e


class FsspecSource(ByteSource):
    """Objects or web files through fsspec: one ranged GET per :meth:`read`, many at once in :meth:`read_many`.

    ``storage_options`` go to the filesystem as they are (``endpoint_url``,
    ``anon``, ``key``..., or ``client_kwargs``). A server error or a missing
    object raises an error naming the URL and the byte range; a web server
    that answers a ranged request with the whole file is an error too.
    """

    remote = True

    def __init__(self, protocol: str, storage_options: dict[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.storage_options = dict(storage_options or {})
        self.fs = _filesystem(protocol, self.storage_options)

    def _path(self, name: str) -> str:
        return str(self.fs._strip_protocol(name))

    def read(self, name: str, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        try:
            data = self.fs.cat_file(self._path(name), start=offset, end=offset + size)
        except FileNotFoundError as e:
            raise MissingFileError(f"{name}: no such object") from e
        except Exception as e:  # fsspec/aiohttp/botocore errors: say which object and range
            raise RemoteReadError(f"{name}: reading bytes {offset}..{offset + size} failed: {e}") from e
        return self._checked(name, offset, size, data)

    def read_many(self, ranges: Sequence[Range]) -> list[bytes]:
        if len(ranges) <= 1:
            return [self.read(*r) for r in ranges]
        paths = [self._path(name) for name, _, _ in ranges]
        starts = [offset for _, offset, _ in ranges]
        ends = [offset + size for _, offset, size in ranges]
        try:
            results = self.fs.cat_ranges(paths, starts, ends, on_error="return")
        except Exception as e:
            raise RemoteReadError(f"{ranges[0][0]}: reading {len(ranges)} byte ranges failed: {e}") from e
        out = []
        for (name, offset, size), data in zip(ranges, results, strict=True):
            if isinstance(data, FileNotFoundError):
                raise MissingFileError(f"{name}: no such object") from data
            if isinstance(data, BaseException):
                raise RemoteReadError(f"{name}: reading bytes {offset}..{offset + size} failed: {data}") from data
            out.append(self._checked(name, offset, size, data))
        return out

    @staticmethod
    def _checked(name: str, offset: int, size: int, data: bytes) -> bytes:
        if len(data) > size:
            raise RemoteReadError(
                f"{name}: asked for bytes {offset}..{offset + size}, the server sent {len(data)} bytes "
                f"(it ignores HTTP Range requests; blockfs needs them)"
            )
        return bytes(data)

    def size(self, name: str) -> int:
        try:
            info = self.fs.info(self._path(name))
        except FileNotFoundError as e:
            raise MissingFileError(f"{name}: no such object") from e
        except Exception as e:
            raise RemoteReadError(f"{name}: asking for its size failed: {e}") from e
        size = info.get("size")
        if size is None:
            raise RemoteReadError(f"{name}: the server does not say the object's size")
        return int(size)


def open_source(path: str, storage_options: dict[str, Any] | None = None) -> ByteSource:
    """A remote source for a URL (fsspec; obstore for ``s3://`` when installed), else a :class:`LocalSource`."""
    protocol = url_protocol(path)
    if protocol is None:
        return LocalSource()
    if protocol == "s3":  # obstore (when installed) does the same GETs at less CPU per request
        source = _obstore_source(dict(storage_options or {}))
        if source is not None:
            return source
    return FsspecSource(protocol, storage_options)


def _obstore_source(storage_options: dict[str, Any]) -> ByteSource | None:
    """An obstore S3 source for these s3fs options, or None (obstore missing, or an option it cannot take)."""
    import importlib.util

    if importlib.util.find_spec("obstore") is None:
        return None
    import fsspec.config

    from .obstore_source import ObstoreS3Source, obstore_config

    # fsspec's configuration (FSSPEC_S3_* variables, --storage-options) gives defaults, as it does to s3fs
    config = obstore_config({**fsspec.config.conf.get("s3", {}), **storage_options})
    return None if config is None else ObstoreS3Source(config, storage_options)
