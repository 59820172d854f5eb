"""The on-disk layout of a pyramid: the :class:`Pyramid` folder, its ``info`` file, level 0 placement.

:func:`plan_pyramid` decides where every level goes, :func:`prepare_pyramid`
makes the folders and puts level 0 in place, and :func:`write_pyramid_info`
publishes the ``info`` that marks a pyramid complete; :func:`level_batches`
and :func:`pyramid_blocks` cut a planned pyramid's levels into batches of blocks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.atomic import fsync_folder, write_atomically
from ..core.bytesource import is_remote, open_source
from ..core.directory import Directory, resolve_block_path
from ..core.errors import ConfigurationError, FormatError, MissingFileError
from ..core.format import VolumeSpec, read_directory
from ..core.grid import BlockGrid
from .planning import MODES, XYZ, Level, plan_downsample_batches, plan_levels

logger = logging.getLogger(__name__)

INFO_NAME = "info"
LEVEL_FILE = "precomputed.blockfs"
LAYER_TYPES = ("image", "segmentation")
LEVEL0_PLACEMENTS = ("link", "copy", "reference")


@dataclass(frozen=True)
class Pyramid:
    """A pyramid folder: its levels and where each level's directory file is.

    ``paths`` are relative to ``folder`` (``1_1_1/precomputed.blockfs``...).
    """

    folder: str
    levels: tuple[Level, ...]
    paths: tuple[str, ...]
    dtype: str
    block_xyz: XYZ
    layer_type: str = "image"
    mode: str = "mean"

    def path(self, i: int) -> str:
        """Absolute path of level ``i``'s directory file (a URL for a level 0 referenced remotely)."""
        if is_remote(self.paths[i]):
            return self.paths[i]
        if is_remote(self.folder):  # a pyramid in a bucket: its levels are objects under its prefix
            return f"{self.folder.rstrip('/')}/{posixpath.normpath(self.paths[i])}"
        return os.path.normpath(os.path.join(self.folder, self.paths[i]))

    def open(self, i: int) -> Directory:
        """Open level ``i`` read-only."""
        return Directory.open(self.path(i))

    def to_info(self) -> dict[str, Any]:
        """The ``info`` JSON: Neuroglancer precomputed keys plus ``blockfs`` paths and ``factors``."""
        return {
            "@type": "blockfs_pyramid",
            "version": 1,
            "type": self.layer_type,
            "data_type": self.dtype,
            "num_channels": 1,
            "downsampling": self.mode,
            "scales": [
                {
                    "key": level.key,
                    "size": list(level.extent_xyz),
                    "resolution": list(level.resolution_nm_xyz),
                    "voxel_offset": [0, 0, 0],
                    "chunk_sizes": [list(self.block_xyz)],
                    "encoding": "raw",
                    "factors": list(level.factors_xyz),
                    "blockfs": path,
                }
                for level, path in zip(self.levels, self.paths, strict=True)
            ],
        }

    @classmethod
    def from_info(cls, folder: str) -> Pyramid:
        """Read the ``info`` of a pyramid folder."""
        folder = os.path.abspath(folder)
        path = os.path.join(folder, INFO_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError as e:
            raise MissingFileError(f"{path}: no pyramid info (is {folder} a finished pyramid?)") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: not valid JSON: {e}") from e
        try:
            if info.get("@type") != "blockfs_pyramid":
                raise FormatError(f"{path}: '@type' is {info.get('@type')!r}, expected 'blockfs_pyramid'")
            levels, paths, previous = [], [], (1, 1, 1)
            for scale in info["scales"]:
                fx, fy, fz = (int(f) for f in scale["factors"])
                sx, sy, sz = (f // p for f, p in zip((fx, fy, fz), previous, strict=True))
                ex, ey, ez = (int(v) for v in scale["size"])
                rx, ry, rz = (float(v) for v in scale["resolution"])
                levels.append(Level(str(scale["key"]), (fx, fy, fz), (sx, sy, sz), (ex, ey, ez), (rx, ry, rz)))
                paths.append(str(scale["blockfs"]))
                previous = (fx, fy, fz)
            bx, by, bz = (int(v) for v in info["scales"][0]["chunk_sizes"][0])
            return cls(
                folder,
                tuple(levels),
                tuple(paths),
                str(info["data_type"]),
                (bx, by, bz),
                str(info.get("type", "image")),
                str(info.get("downsampling", "mean")),
            )
        except (KeyError, IndexError, TypeError, ValueError) as e:
            if isinstance(e, FormatError):
                raise
            raise FormatError(f"{path}: not a blockfs pyramid info: {e!r}") from e


def is_pyramid(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a pyramid ``info``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, INFO_NAME))


def plan_pyramid(
    level0_path: str | os.PathLike[str],
    out_folder: str | os.PathLike[str],
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    mode: str = "mean",
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    level0: str = "link",
) -> Pyramid:
    """Plan the pyramid of ``level0_path`` in ``out_folder`` (reads only level 0's header).

    ``level0`` says where level 0 will be: ``"link"`` or ``"copy"`` put it in
    ``out_folder/1_1_1/`` (hard links fall back to a copy across filesystems),
    ``"reference"`` records its path relative to ``out_folder``. ``out_folder``
    may be a bucket's prefix (``s3://bucket/path/pyramid``): level 0 is then
    uploaded into it (``"link"`` and ``"copy"`` alike).
    """
    if mode not in MODES:
        raise ConfigurationError(f"Invalid downsampling mode {mode!r}; expected one of {MODES}")
    if level0 not in LEVEL0_PLACEMENTS:
        raise ConfigurationError(f"Invalid level0 placement {level0!r}; expected one of {LEVEL0_PLACEMENTS}")
    remote = is_remote(os.fspath(level0_path))
    spec = read_directory(level0_path, source=open_source(os.fspath(level0_path)) if remote else None).spec
    levels = plan_levels(spec.grid.shape, spec.grid.block_xyz, resolution_nm_xyz, max_levels, factors)
    out_folder = os.fspath(out_folder).rstrip("/") if is_remote(os.fspath(out_folder)) else os.path.abspath(out_folder)
    paths = [os.path.join(level.key, LEVEL_FILE) for level in levels]
    if level0 == "reference":
        paths[0] = os.fspath(level0_path) if remote else os.path.relpath(os.path.abspath(level0_path), out_folder)
    return Pyramid(
        out_folder,
        tuple(levels),
        tuple(paths),
        spec.dtype.name,
        spec.grid.block_xyz,
        "segmentation" if mode == "mode" else "image",
        mode,
    )


def place_level0(pyramid: Pyramid, level0_path: str | os.PathLike[str], how: str = "link") -> str:
    """Put level 0 where ``pyramid`` expects it (hard links, or a copy); return its path.

    The directory file is written last, so an interrupted copy is not a volume.
    """
    target = pyramid.path(0)
    if is_remote(pyramid.folder) and not is_remote(os.fspath(level0_path)):
        return _upload_level0(os.fspath(level0_path), target) if how != "reference" else target
    if is_remote(os.fspath(level0_path)):  # a bucket's volume: referenced by its URL, or downloaded
        return target if how == "reference" else _download_level0(os.fspath(level0_path), target)
    source = os.path.abspath(level0_path)
    if how == "reference" or os.path.abspath(target) == source:
        return target
    contents = read_directory(source)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    names = [resolve_block_path(source, n) for n in contents.block_files]
    for src in [*names, source]:
        dest = target if src == source else os.path.join(os.path.dirname(target), os.path.basename(src))
        if os.path.exists(dest):
            if os.path.samefile(src, dest):
                continue
            os.unlink(dest)
        if how == "link":
            try:
                os.link(src, dest)
                continue
            except OSError as e:
                logger.info("cannot hard-link %s (%s); copying it", src, e)
        shutil.copyfile(src, dest + ".tmp-copy")
        os.replace(dest + ".tmp-copy", dest)
    fsync_folder(target)
    return target


def _download_level0(url: str, target: str) -> str:
    """Copy the remote level 0 to ``target`` (block files first, the directory last, resumable)."""
    from ..core.remote_copy import copy_remote

    copied = copy_remote(url, os.path.dirname(target))
    if copied != target:
        os.replace(copied, target)  # block files are named relative to the directory: only it is renamed
        fsync_folder(target)
    return target


def _upload_level0(path: str, target: str) -> str:
    """Upload the local level 0 as the object ``target`` (block objects first, the directory last, resumable)."""
    from ..core.remote_copy import copy_remote

    folder, name = target.rsplit("/", 1)
    return copy_remote(path, folder, name=name)


def prepare_pyramid(pyramid: Pyramid, level0_path: str | os.PathLike[str], how: str = "link") -> None:
    """Create the folder of every level and put level 0 in place (the first step of a build)."""
    for i in range(len(pyramid.levels)):
        if (i or how != "reference") and not is_remote(pyramid.path(i)):
            os.makedirs(os.path.dirname(pyramid.path(i)), exist_ok=True)
    place_level0(pyramid, level0_path, how)


def write_pyramid_info(pyramid: Pyramid) -> str:
    """Publish the pyramid's ``info`` atomically (last: it marks the pyramid complete)."""
    data = json.dumps(pyramid.to_info(), indent=1).encode("utf-8")
    if is_remote(pyramid.folder):  # an object appears only whole: one PUT is atomic
        from ..core.objects import ObjectStore

        url = f"{pyramid.folder}/{INFO_NAME}"
        ObjectStore.for_url(url).put_bytes(data, url)
        return url
    path = os.path.join(pyramid.folder, INFO_NAME)
    write_atomically(path, [data])
    return path


def level_batches(pyramid: Pyramid, i: int, blocks_per_batch: int) -> list[list[XYZ]]:
    """Batches of block origins of level ``i`` (>= 1), ``blocks_per_batch`` blocks or fewer each."""
    grid = BlockGrid(pyramid.levels[i].extent_xyz, pyramid.block_xyz)
    spec = VolumeSpec(grid, np.dtype(pyramid.dtype))
    return plan_downsample_batches(spec, math.ceil(grid.n_blocks / blocks_per_batch))


def pyramid_blocks(pyramid: Pyramid) -> int:
    """Number of block positions of every level above level 0 (for progress bars)."""
    return sum(BlockGrid(level.extent_xyz, pyramid.block_xyz).n_blocks for level in pyramid.levels[1:])
