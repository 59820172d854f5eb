"""A blockfs volume or pyramid seen as the keys and values of an OME-Zarr group.

:class:`ZarrView` is the synchronous, thread-safe heart of every zarr route:
the :class:`~.store.BlockfsStore` (zarr-python), the HTTP ``/zarr/`` route
and the references writer all ask it for a key's bytes. Metadata documents are
made once at open; a chunk key costs one index lookup and one ``pread`` (an
edge chunk also a decode into a zero-padded memcpyed Blosc frame, kept in a
small LRU cache).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core.bytesource import is_remote
from ..core.codec import checksum
from ..core.directory import Directory
from ..core.errors import ChecksumError, ConfigurationError
from ..pyramid.layout import Pyramid, is_pyramid
from .chunks import ZYX, Frame, LevelChunks, memcpy_header, pad_frame, pad_frame_memcpy
from .codecs import BLOSC, DECODED, PCODEC, chunk_kind
from .metadata import ArrayInfo, check_zarr_format, group_documents, volume_name

logger = logging.getLogger(__name__)

#: Bytes of padded edge chunks kept per view (a re-read of an edge costs no decode).
EDGE_CACHE_BYTES = 64 << 20


def _resolution_from_metadata(d: Directory) -> tuple[float, float, float] | None:
    """The volume's own ``resolution_nm_xyz`` metadata (top level or under ``pyramid``), if valid."""
    md = d.metadata
    pyramid = md.get("pyramid")
    nested: dict[str, Any] = pyramid if isinstance(pyramid, dict) else {}
    for candidate in (nested.get("resolution_nm_xyz"), md.get("resolution_nm_xyz")):
        try:
            values = tuple(float(v) for v in candidate)  # type: ignore[union-attr]  # None: TypeError, caught below
        except (TypeError, ValueError):
            continue
        if len(values) == 3 and all(v > 0 for v in values):
            return values
    return None


def _um_zyx(resolution_nm_xyz: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) / 1000.0 for v in resolution_nm_xyz)
    return (z, y, x)


class ZarrView:
    """The OME-Zarr group of a ``.blockfs`` directory file or a pyramid folder.

    Parameters
    ----------
    path
        A directory file (one level, ``"0"``) or a pyramid folder (level k = ``"k"``).
    zarr_format
        2 (NGFF 0.4, what napari-ome-zarr, ome-zarr-py and Neuroglancer read) or 3 (NGFF 0.5).
    resolution_nm_xyz
        Voxel size of level 0 in nm (XYZ order); default: the pyramid's, else
        the volume's ``resolution_nm_xyz`` metadata, else unknown (scale 1, no unit).
    verify_checksums
        Check each frame against the index's CRC-32C before handing it out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        zarr_format: int = 2,
        resolution_nm_xyz: Sequence[float] | None = None,
        verify_checksums: bool = True,
    ) -> None:
        remote = is_remote(os.fspath(path))
        self.path = os.fspath(path) if remote else os.path.abspath(os.fspath(path))  # a URL: a remote volume
        self.zarr_format = check_zarr_format(zarr_format)
        override = None
        if resolution_nm_xyz is not None:
            override = tuple(float(v) for v in resolution_nm_xyz)
            if len(override) != 3 or not all(v > 0 for v in override):
                raise ConfigurationError(
                    f"Expected three positive resolutions (x, y, z) in nm. Got {resolution_nm_xyz!r} instead."
                )
        directories: list[Directory] = []
        scales: list[tuple[float, float, float] | None] = []
        mode = "none"
        if not remote and os.path.isdir(self.path):
            if not is_pyramid(self.path):
                raise ConfigurationError(
                    f"{self.path} is a folder without a pyramid info; pass a .blockfs file or a pyramid folder"
                )
            pyramid = Pyramid.from_info(self.path)
            mode = pyramid.mode
            for i, level in enumerate(pyramid.levels):
                directories.append(pyramid.open(i))
                level_nm: Sequence[float]
                if override is None:
                    level_nm = level.resolution_nm_xyz
                else:
                    level_nm = tuple(r * f for r, f in zip(override, level.factors_xyz, strict=True))
                scales.append(_um_zyx(level_nm))
        else:
            d = Directory.open(self.path)
            directories.append(d)
            nm = override or _resolution_from_metadata(d)
            scales.append(_um_zyx(nm) if nm else None)
        self.levels = [LevelChunks(d, verify_checksums) for d in directories]
        self.infos = [
            ArrayInfo(str(k), c.shape, c.chunk_shape, c.dtype, c.directory.spec.codec, s)
            for k, (c, s) in enumerate(zip(self.levels, scales, strict=True))
        ]
        docs = group_documents(self.infos, volume_name(self.path), mode, self.zarr_format)
        self.documents = {k: json.dumps(v, indent=1).encode("utf-8") for k, v in docs.items()}
        self._chunk_prefix = "" if self.zarr_format == 2 else "c/"
        self._edge_cache: OrderedDict[tuple[int, ZYX], bytearray] = OrderedDict()
        self._edge_cache_bytes = 0
        self._edge_lock = threading.Lock()
        self._headers: dict[int, bytes] = {}
        self._kinds = [chunk_kind(c.directory.spec.codec) for c in self.levels]

    # ------------------------------------------------------------- keys
    def chunk_key(self, level: int, chunk: ZYX) -> str:
        """The store key of a chunk: ``"k/z/y/x"`` (v2) or ``"k/c/z/y/x"`` (v3)."""
        return f"{level}/{self._chunk_prefix}{chunk[0]}/{chunk[1]}/{chunk[2]}"

    def parse_chunk_key(self, key: str) -> tuple[int, ZYX] | None:
        """(level, (z, y, x) chunk) of a chunk key, or None if ``key`` names no chunk of this group."""
        parts = key.split("/")
        if self.zarr_format == 3:
            if len(parts) != 5 or parts[1] != "c":
                return None
            parts = [parts[0], *parts[2:]]
        if len(parts) != 4 or not all(p.isdigit() and p.isascii() for p in parts):
            return None
        level = int(parts[0])
        if level >= len(self.levels) or parts[0] != str(level):
            return None
        return level, (int(parts[1]), int(parts[2]), int(parts[3]))

    # ----------------------------------------------------------- values
    def get(self, key: str) -> bytes | bytearray | None:
        """The bytes of ``key``: a metadata document, a chunk's Blosc frame, or None (absent)."""
        doc = self.documents.get(key)
        if doc is not None:
            return doc
        parsed = self.parse_chunk_key(key)
        if parsed is None:
            return None
        level, chunk = parsed
        chunks = self.levels[level]
        frame = chunks.locate(chunk)
        if frame is None:
            return None
        kind = self._kinds[level]
        if not frame.edge and kind != DECODED:
            return chunks.read_frame(frame)  # verbatim: the stored frame is the zarr chunk
        with self._edge_lock:
            cached = self._edge_cache.get((level, chunk))
            if cached is not None:
                self._edge_cache.move_to_end((level, chunk))
                return cached
        padded = self._made_chunk(level, chunk, frame, kind)
        with self._edge_lock:
            if (level, chunk) not in self._edge_cache:
                self._edge_cache[(level, chunk)] = padded
                self._edge_cache_bytes += len(padded)
            while self._edge_cache_bytes > EDGE_CACHE_BYTES and self._edge_cache:
                self._edge_cache_bytes -= len(self._edge_cache.popitem(last=False)[1])
        return padded

    def _made_chunk(self, level: int, chunk: ZYX, frame: Frame, kind: str) -> bytearray:
        """A chunk zarr cannot take as stored: an edge padded to the chunk shape, or a decoded fpzip block."""
        chunks = self.levels[level]
        data = chunks.read_frame(frame)
        if kind == BLOSC:
            header = self._headers.get(level)
            if header is None:
                header = self._headers.setdefault(level, memcpy_header(chunks))
            return pad_frame_memcpy(data, chunks, chunk, header)
        codec = chunks.directory.spec.codec
        if kind == PCODEC:
            return bytearray(pad_frame(data, chunks, chunk, codec))
        if not chunks.verify and checksum(data) != frame.crc32c:  # fpzip must never see a corrupt frame
            raise ChecksumError(f"{chunks.paths[frame.file]}: frame at offset {frame.offset}: checksum mismatch")
        out = bytearray(int(np.prod(chunks.chunk_shape)) * chunks.dtype.itemsize)  # zero-filled: the padding
        padded = np.frombuffer(out, chunks.dtype).reshape(chunks.chunk_shape)
        stored = chunks.stored_shape(chunk)
        padded[: stored[0], : stored[1], : stored[2]] = codec.decode(data, chunks.dtype, stored)
        return out

    def exists(self, key: str) -> bool:
        """True if ``key`` is a metadata document or a chunk whose block was written."""
        if key in self.documents:
            return True
        parsed = self.parse_chunk_key(key)
        return parsed is not None and self.levels[parsed[0]].locate(parsed[1]) is not None

    def all_keys(self) -> Iterator[str]:
        """Every key: the metadata documents, then each level's present chunks in position order."""
        yield from self.documents
        for level, chunks in enumerate(self.levels):
            for chunk in chunks.present():
                yield self.chunk_key(level, chunk)

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``; a prefix inside one level scans only that level."""
        yield from (k for k in self.documents if k.startswith(prefix))
        for level, chunks in enumerate(self.levels):
            head = f"{level}/"
            if not (head.startswith(prefix) or prefix.startswith(head)):
                continue
            for chunk in chunks.present():
                key = self.chunk_key(level, chunk)
                if key.startswith(prefix):
                    yield key

    def close(self) -> None:
        """Close every level's block files."""
        for chunks in self.levels:
            chunks.close()
