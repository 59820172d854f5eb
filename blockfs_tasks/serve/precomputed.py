"""A blockfs volume or pyramid as a Neuroglancer precomputed data source.

Shared by the HTTP server (:mod:`.server`) and the static export
(:mod:`.static`). One chunk is one blockfs block: the chunk of scale ``key``
whose first voxel is (x0, y0, z0) is named ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>``
(XYZ order, ends exclusive, edge chunks truncated at the volume's extent) and
holds the block's raw little-endian bytes with x varying fastest, which is
exactly the byte order of a (z, y, x) C-ordered array. A block never written
has no chunk (clients read it as zeros). Nothing but the ``info`` and names of
that exact form are ever resolved, so no other path is reachable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..core.directory import Directory
from ..core.errors import BadRequestError, BlockfsError, ConfigurationError
from ..pyramid import LAYER_TYPES, Pyramid, is_pyramid, level_key

logger = logging.getLogger(__name__)

#: Data types of the precomputed format (blockfs also has int64 and float64, which it lacks).
DATA_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32")

_CHUNK_NAME = re.compile(r"([0-9]+)-([0-9]+)_([0-9]+)-([0-9]+)_([0-9]+)-([0-9]+)")
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
#: Digits of the longest chunk coordinate answered (2**64 has 20); longer is a bad request, not a lookup.
MAX_COORDINATE_DIGITS = 20

Stamp = tuple[int, int, int]


def file_stamp(path: str) -> Stamp | None:
    """(inode, size, mtime in ns) of ``path``, None if it cannot be stat'ed: a cheap "has it changed"."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Scale:
    """One scale of the source: its key, its volume and its voxel size in nm (XYZ order)."""

    key: str
    directory: Directory
    resolution_nm_xyz: tuple[float, float, float]

    def info(self) -> dict[str, Any]:
        """This scale's entry in ``info["scales"]``."""
        return {
            "key": self.key,
            "size": list(self.directory.grid.extent_xyz),
            "resolution": list(self.resolution_nm_xyz),
            "voxel_offset": [0, 0, 0],
            "chunk_sizes": [list(self.directory.grid.block_xyz)],
            "encoding": "raw",
        }


def chunk_name(grid_extent_xyz: Sequence[int], block_xyz: Sequence[int], origin_xyz: Sequence[int]) -> str:
    """The chunk name ``x0-x1_y0-y1_z0-z1`` of the block starting at ``origin_xyz``."""
    parts = [f"{o}-{min(o + b, e)}" for o, b, e in zip(origin_xyz, block_xyz, grid_extent_xyz, strict=True)]
    return "_".join(parts)


class PrecomputedVolume:
    """The ``info`` and chunks of one or more scales (level 0 first).

    Parameters
    ----------
    scales
        The scales, finest first; all of one dtype.
    layer_type
        ``"image"`` or ``"segmentation"``.

    A scale whose directory file changes on disk (a writer published new
    blocks, or the volume was rebuilt) is reopened on the next request that
    touches it: each request costs one ``stat`` of that directory file.
    """

    def __init__(self, scales: Sequence[Scale], layer_type: str = "image") -> None:
        if not scales:
            raise ConfigurationError("Expected at least one scale.")
        if layer_type not in LAYER_TYPES:
            raise ConfigurationError(f"Invalid layer type {layer_type!r}; expected one of {LAYER_TYPES}")
        dtypes = {s.directory.dtype.name for s in scales}
        if len(dtypes) != 1:
            raise ConfigurationError(f"Expected every scale to have one dtype. Got {sorted(dtypes)} instead.")
        dtype = dtypes.pop()
        if dtype not in DATA_TYPES:
            raise ConfigurationError(
                f"{scales[0].directory.directory_filename}: dtype {dtype} has no Neuroglancer precomputed "
                f"data type; expected one of {DATA_TYPES}"
            )
        keys = [s.key for s in scales]
        for key in keys:
            if not _KEY.fullmatch(key) or key in (".", ".."):
                raise ConfigurationError(f"Invalid scale key {key!r}: expected letters, digits, '_', '-', '.'")
        if len(set(keys)) != len(keys):
            raise ConfigurationError(f"Scale keys must be unique. Got {keys} instead.")
        self.scales = tuple(scales)
        self.layer_type = layer_type
        self.data_type = dtype
        self._by_key = {s.key: s for s in scales}
        self._stamps = {s.key: file_stamp(s.directory.directory_filename) for s in scales}
        self._reload_lock = threading.Lock()
        self._info = json.dumps(self.info(), indent=1).encode("utf-8")

    def current(self, key: str) -> Scale | None:
        """Scale ``key`` as its directory file is now (reopened if the file changed); None if no such scale."""
        scale = self._by_key.get(key)
        if scale is None:
            return None
        path = scale.directory.directory_filename
        stamp = file_stamp(path)
        if stamp is None or stamp == self._stamps[key]:
            return scale
        with self._reload_lock:
            scale = self._by_key[key]
            if stamp == self._stamps[key]:  # another request reloaded it meanwhile
                return scale
            self._stamps[key] = stamp
            try:
                directory = Directory.open(path)
            except (BlockfsError, OSError) as e:
                logger.warning("%s changed but cannot be opened (%s); serving the version loaded before", path, e)
                return scale
            scale = replace(scale, directory=directory)
            self._by_key[key] = scale
            self.scales = tuple(scale if s.key == key else s for s in self.scales)
            self.data_type = self.scales[0].directory.dtype.name
            self._info = json.dumps(self.info(), indent=1).encode("utf-8")
            logger.info("reloaded %s: it changed on disk", path)
            return scale

    def refresh(self) -> None:
        """Reopen every scale whose directory file changed."""
        for key in list(self._by_key):
            self.current(key)

    def info(self) -> dict[str, Any]:
        """The precomputed ``info`` JSON as a dict."""
        return {
            "@type": "neuroglancer_multiscale_volume",
            "type": self.layer_type,
            "data_type": self.data_type,
            "num_channels": 1,
            "scales": [s.info() for s in self.scales],
        }

    def info_bytes(self) -> bytes:
        """The ``info`` JSON, encoded once per version of the scales' directory files."""
        self.refresh()
        return self._info

    def locate(self, key: str, name: str) -> tuple[Scale, tuple[int, int, int]] | None:
        """The scale and block origin (x, y, z) of chunk ``key/name``; None unless it is exactly one chunk."""
        scale = self.current(key)
        match = _CHUNK_NAME.fullmatch(name)
        if scale is None or match is None:
            return None
        if any(len(number) > MAX_COORDINATE_DIGITS for number in match.groups()):
            raise BadRequestError(
                f"{key}/{name[:40]}...: a chunk coordinate longer than {MAX_COORDINATE_DIGITS} digits"
            )
        grid = scale.directory.grid
        origin = (int(match[1]), int(match[3]), int(match[5]))
        if any(not 0 <= o < e or o % b for o, e, b in zip(origin, grid.extent_xyz, grid.block_xyz, strict=True)):
            return None
        if chunk_name(grid.extent_xyz, grid.block_xyz, origin) != name:  # wrong ends, leading zeros...
            return None
        return scale, origin

    def read_chunk(self, key: str, name: str) -> bytes | None:
        """The raw bytes of chunk ``key/name``; None if there is no such chunk or it was never written."""
        found = self.locate(key, name)
        if found is None:
            return None
        scale, (x, y, z) = found
        if not scale.directory.has_block(x, y, z):
            return None
        return chunk_bytes(scale.directory.read_block(x, y, z))

    def resolve(self, url_path: str) -> bytes | None:
        """What a URL path (already percent-decoded, query removed) serves: the info, a chunk, or None."""
        parts = url_path.removeprefix("/").split("/")
        if parts == ["info"]:
            return self.info_bytes()
        if parts == ["provenance"]:
            return self.provenance_bytes()
        if len(parts) == 2:
            return self.read_chunk(parts[0], parts[1])
        return None

    def provenance_bytes(self) -> bytes:
        """The ``provenance`` JSON cloud-volume reads: the finest scale's record (:mod:`..core.provenance`)."""
        from ..core.directory_file import read_metadata
        from ..core.provenance import cloudvolume_provenance

        directory = self.scales[0].directory
        path = directory.directory_filename
        commit = read_metadata(path).get("Commit") if os.path.isfile(path) else None
        return json.dumps(cloudvolume_provenance(directory.metadata, commit), indent=1).encode("utf-8")

    def chunks(self, scale: Scale) -> Iterator[tuple[str, tuple[int, int, int]]]:
        """Names and origins (x, y, z) of the chunks present in ``scale``."""
        grid = scale.directory.grid
        for origin in scale.directory:
            yield chunk_name(grid.extent_xyz, grid.block_xyz, origin), origin


def chunk_bytes(block: np.ndarray) -> bytes:
    """A (z, y, x) block as precomputed raw bytes: little-endian, x fastest."""
    return np.ascontiguousarray(block, block.dtype.newbyteorder("<")).tobytes()


def _resolution_from_metadata(d: Directory) -> tuple[float, float, float] | None:
    md = d.metadata
    for candidate in (md.get("pyramid", {}).get("resolution_nm_xyz") if isinstance(md.get("pyramid"), dict) else None,
                      md.get("resolution_nm_xyz")):
        if candidate is not None:
            try:
                values = tuple(float(v) for v in candidate)
            except (TypeError, ValueError):
                continue
            if len(values) == 3 and all(v > 0 for v in values):
                return values
    return None


def open_precomputed(
    path: str,
    layer_type: str | None = None,
    resolution_nm_xyz: Sequence[float] | None = None,
) -> PrecomputedVolume:
    """Open a ``.blockfs`` volume (one scale) or a pyramid folder (every level) as a precomputed source.

    Parameters
    ----------
    path
        A directory file, or a pyramid folder with an ``info`` (:mod:`blockfs_tasks.pyramid`).
    layer_type
        ``"image"`` or ``"segmentation"``; default: the pyramid's, else image.
    resolution_nm_xyz
        Voxel size of the finest scale in nm (XYZ order); coarser scales are
        scaled by their factors. Default: the pyramid's, else the volume's
        metadata ``resolution_nm_xyz``, else 1 nm.
    """
    override: tuple[float, float, float] | None = None
    if resolution_nm_xyz is not None:
        values = tuple(float(v) for v in resolution_nm_xyz)
        if len(values) != 3 or not all(v > 0 for v in values):
            raise ConfigurationError(
                f"Expected three positive resolutions (x, y, z) in nm. Got {resolution_nm_xyz!r} instead."
            )
        override = values
    if os.path.isdir(path):
        if not is_pyramid(path):
            raise ConfigurationError(
                f"{path} is a folder without a pyramid info; pass a .blockfs file or a pyramid folder"
            )
        pyramid = Pyramid.from_info(path)
        scales = []
        for i, level in enumerate(pyramid.levels):
            resolution = level.resolution_nm_xyz
            if override is not None:
                (rx, ry, rz), (fx, fy, fz) = override, level.factors_xyz
                resolution = (rx * fx, ry * fy, rz * fz)
            scales.append(Scale(level.key, pyramid.open(i), resolution))
        return PrecomputedVolume(scales, layer_type or pyramid.layer_type)
    d = Directory.open(path)
    resolution = override or _resolution_from_metadata(d) or (1.0, 1.0, 1.0)
    return PrecomputedVolume([Scale(level_key((1, 1, 1)), d, resolution)], layer_type or "image")
