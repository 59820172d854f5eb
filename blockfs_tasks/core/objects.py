"""Whole files to and from an object store (s3://, gs://) through fsspec, each checked by its CRC-32C.

What a volume's writer and ``blockfs-cp`` need of a bucket: put a local file
as one object (multipart for large files, done by the fsspec filesystem), get
an object into a local file, and tell whether an object already holds a
file's bytes. An object store shows an object only once its upload is
complete, so an object that exists is whole; a local file is written under a
temporary name, fsynced and renamed, so it too exists only whole.

Each uploaded object carries the CRC-32C of its bytes in its metadata
(``blockfs-crc32c``), so a rerun skips objects whose size and checksum match
without reading them back; an object without it (put there by another tool)
is read and checksummed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import google_crc32c

from .atomic import published
from .bytesource import FsspecSource, url_protocol
from .errors import ConfigurationError, MissingFileError, RemoteReadError

logger = logging.getLogger(__name__)

CRC_KEY = "blockfs-crc32c"
_CHUNK = 8 << 20


def file_crc32c(path: str) -> int:
    """CRC-32C of a local file, streamed."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = google_crc32c.extend(crc, chunk)
    return crc


@dataclass
class ObjectStore:
    """One bucket's filesystem (from a URL's protocol and fsspec ``storage_options``, as given)."""

    protocol: str
    storage_options: dict[str, Any]

    @classmethod
    def for_url(cls, url: str, storage_options: dict[str, Any] | None = None) -> ObjectStore:
        protocol = url_protocol(url)
        if protocol is None:
            raise ConfigurationError(f"{url} is not a URL of an object store (s3://, gs://)")
        return cls(protocol, dict(storage_options or {}))

    def _check_writable(self, url: str) -> None:
        if self.protocol in ("http", "https"):
            raise ConfigurationError(f"{url}: a web server is read-only; write to s3:// or gs:// instead")

    def __post_init__(self) -> None:
        self.source = FsspecSource(self.protocol, self.storage_options)
        self.fs = self.source.fs

    def path(self, url: str) -> str:
        return str(self.fs._strip_protocol(url))

    def info(self, url: str) -> dict[str, Any] | None:
        """The object's fsspec info, or None if there is no such object (always asks the server)."""
        try:
            self.fs.invalidate_cache(self.path(url))
            return dict(self.fs.info(self.path(url)))
        except FileNotFoundError:
            return None

    def exists(self, url: str) -> bool:
        return self.info(url) is not None

    def stored_crc32c(self, url: str, info: dict[str, Any]) -> int:
        """The object's CRC-32C: from its metadata if it carries one, else by reading it."""
        meta: dict[str, Any] | None = None
        if hasattr(self.fs, "metadata"):  # s3fs
            try:
                meta = self.fs.metadata(self.path(url), refresh=True)
            except Exception as e:  # no metadata API answer: checksum the bytes
                logger.debug("%s: no metadata (%s)", url, e)
        elif isinstance(info.get("metadata"), dict):  # gcsfs
            meta = info["metadata"]
        if meta and CRC_KEY in meta:
            try:
                return int(meta[CRC_KEY], 16)
            except ValueError:
                pass
        crc = 0
        with self.fs.open(self.path(url), "rb", block_size=_CHUNK) as f:
            while chunk := f.read(_CHUNK):
                crc = google_crc32c.extend(crc, chunk)
        return crc

    def holds(self, url: str, size: int, crc: int) -> bool:
        """True if the object exists with ``size`` bytes whose CRC-32C is ``crc``."""
        info = self.info(url)
        return info is not None and int(info.get("size", -1)) == size and self.stored_crc32c(url, info) == crc

    def put(self, local: str, url: str, crc: int | None = None) -> None:
        """Upload ``local`` as the object ``url`` (its CRC-32C in the object's metadata)."""
        self._check_writable(url)
        crc = file_crc32c(local) if crc is None else crc
        tag = f"{crc:08x}"
        kwargs: dict[str, Any] = {}
        if self.protocol in ("s3", "s3a"):
            kwargs["Metadata"] = {CRC_KEY: tag}
        elif self.protocol in ("gs", "gcs"):
            kwargs["metadata"] = {CRC_KEY: tag}
        try:
            self.fs.put_file(local, self.path(url), **kwargs)
        except Exception as e:
            raise RemoteReadError(f"{url}: uploading {local} failed: {e}") from e
        self.fs.invalidate_cache(self.path(url))

    def put_bytes(self, data: bytes, url: str) -> None:
        """Write ``data`` as the object ``url`` in one request (small objects: the directory, fragments)."""
        self._check_writable(url)
        crc = google_crc32c.value(data)
        kwargs: dict[str, Any] = {}
        if self.protocol in ("s3", "s3a"):
            kwargs["Metadata"] = {CRC_KEY: f"{crc:08x}"}
        elif self.protocol in ("gs", "gcs"):
            kwargs["metadata"] = {CRC_KEY: f"{crc:08x}"}
        try:
            self.fs.pipe_file(self.path(url), data, **kwargs)
        except Exception as e:
            raise RemoteReadError(f"{url}: writing {len(data)} bytes failed: {e}") from e
        self.fs.invalidate_cache(self.path(url))

    def get(self, url: str, local: str) -> None:
        """Download the object ``url`` into ``local`` (temporary name, fsync, rename: whole or absent)."""
        with published(local) as tmp:
            try:
                self.fs.get_file(self.path(url), tmp)
            except FileNotFoundError as e:
                raise MissingFileError(f"{url}: no such object") from e
            except Exception as e:
                raise RemoteReadError(f"{url}: downloading to {local} failed: {e}") from e

    def cat(self, url: str) -> bytes:
        """The whole object (small objects: fragments, the directory)."""
        return self.source.read(url, 0, self.source.size(url))
