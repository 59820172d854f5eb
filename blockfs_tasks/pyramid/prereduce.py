"""Level 1 made during ingest: each batch reduces the raw data it holds, and leaves it beside its fragment.

Building level 1 from level 0 costs a second read and a decode of every
level-0 block (about 2 CPU s per GiB at Blosc zstd level 2), while the ingest
batches held the same voxels raw moments before. When a pyramid is asked for
(``Downsample`` without ``--volume`` passes ``BuildDirectory`` the level-1
step and the pooling mode), each batch reduces every piece it reads (a z row
of blocks times a y band, all of x: :func:`~blockfs_tasks.ingest.write.batch_blocks`)
with the pyramid's own reduction and writes the result to a *slab file*
``<volume>.<k>.level1`` beside its block file, before its fragment: a
committed batch implies its slab. The first group of ``Downsample`` then reads
level 1 from the slabs (:class:`Level1Slabs`) instead of decoding level 0;
once the pyramid's ``info`` is published the slabs are removed
(:func:`remove_slabs`).

Why the result is the same bytes: ingest pieces start on block rows, so with
block sizes divisible by the step every reduction window lies inside one piece
(windows cut by the volume's edge are cut the same way), and the reductions
are window by window (:mod:`.reduce`). A lossy codec (BitRound) is never
pre-reduced: its level 0 reads back other values than the raw data.

A slab is a cache, never the only copy: it is used only when every check
passes, and otherwise level 0 is decoded as before (a volume ingested without
a pyramid, ``Downsample --volume`` on a volume changed since, a slab missing,
truncated or failing a checksum). The checks: the slab of every block file of
the directory exists, its footer (checksummed) names this volume's extent,
block size, dtype, step and mode; the slabs' pieces tile the volume once; every
block the directory indexes lies in the block file of the batch whose slab
covers it (a block rewritten later by the live API points elsewhere); no slab
is newer than the directory file (a killed re-ingest with changed data left a
newer slab beside the old volume); and each chunk's CRC-32C, checked as it is
read.

Slab file (little-endian): chunks of level-1 voxels, C order, then a JSON
footer, then ``u64 footer length, u32 CRC-32C of the footer, 8 bytes
b"BFSLAB01"``. A piece is stored as chunks of level-1 block width in x (the
columns a ``Downsample`` region reads), each with its offset, byte count and
CRC-32C in the footer. Slabs are not fsynced (a cache: a torn one fails its
checks). Nothing here imports luigi.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.atomic import temporary_name, write_all
from ..core.codec import checksum
from ..core.directory import Directory, resolve_block_path
from ..core.errors import ConfigurationError
from ..core.format import VolumeSpec
from ..core.naming import block_file_number
from .planning import MODES, XYZ, check_xyz, plan_levels
from .reduce import REDUCERS

logger = logging.getLogger(__name__)

SLAB_SUFFIX = ".level1"
MAGIC = b"BFSLAB01"
_TAIL = struct.Struct("<QI8s")  # footer length, footer CRC-32C, magic
FORMAT = 1


def slab_name(directory_path: str, number: int) -> str:
    """Path of the level-1 slab of batch ``number`` (beside block file ``<directory>.<number>``)."""
    return f"{directory_path}.{number}{SLAB_SUFFIX}"


def slab_files(directory_path: str) -> list[str]:
    """Every slab file beside the volume ``directory_path`` (temporary files aside)."""
    pattern = re.compile(re.escape(os.path.basename(directory_path)) + r"\.\d+" + re.escape(SLAB_SUFFIX))
    folder = os.path.dirname(os.path.abspath(directory_path))
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if pattern.fullmatch(f))


def remove_slabs(directory_path: str) -> int:
    """Remove the slabs of a volume (once its pyramid is complete); return how many."""
    removed = 0
    for path in slab_files(os.path.abspath(directory_path)):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        logger.info("%s: removed %d level-1 slabs", directory_path, removed)
    return removed


@dataclass(frozen=True)
class Prereduce:
    """What an ingest batch needs to make level 1: the pooling mode and the step (XYZ) from level 0."""

    mode: str
    step_xyz: XYZ

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(f"Invalid downsampling mode {self.mode!r}; expected one of {MODES}")
        check_xyz("level-1 steps", self.step_xyz)

    @classmethod
    def for_pyramid(cls, spec: VolumeSpec, pyramid: dict[str, Any]) -> Prereduce | None:
        """Level 1 of the pyramid ``{"mode", "resolution_nm", "max_levels"}`` over ``spec``; None if it has none.

        An empty dict (no pyramid asked for) is None too. The step comes from
        :func:`~.planning.plan_levels`, as ``Downsample`` plans it.
        """
        if not pyramid:
            return None
        try:
            mode = str(pyramid["mode"])
            resolution = [float(r) for r in pyramid.get("resolution_nm", (1.0, 1.0, 1.0))]
            max_levels = int(pyramid.get("max_levels") or 0) or None
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigurationError(
                "Expected the pyramid as {'mode': 'mean', 'resolution_nm': [x, y, z], 'max_levels': 0}. "
                f"Got {pyramid!r} instead."
            ) from e
        levels = plan_levels(spec.grid.shape, spec.grid.block_xyz, resolution, max_levels)
        return cls(mode, levels[1].step_xyz) if len(levels) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "step_xyz": list(self.step_xyz)}

    def applies_to(self, spec: VolumeSpec) -> bool:
        """True when every reduction window lies in one ingest piece and level 0 reads back the raw data."""
        bx, by, bz = spec.grid.block_xyz
        sx, sy, sz = self.step_xyz
        return by % sy == 0 and bz % sz == 0 and bx % sx == 0 and not spec.codec.loss

    @property
    def step_zyx(self) -> tuple[int, int, int]:
        sx, sy, sz = self.step_xyz
        return sz, sy, sx


def _identity(spec: VolumeSpec, prereduce: Prereduce) -> dict[str, Any]:
    """What a slab must agree on with the volume and the pyramid that read it."""
    return {
        "format": FORMAT,
        "extent_xyz": list(spec.grid.extent_xyz),
        "block_xyz": list(spec.grid.block_xyz),
        "dtype": np.dtype(spec.dtype).newbyteorder("<").str,
        **prereduce.to_dict(),
    }


class SlabWriter:
    """Writes batch ``number``'s level-1 slab: :meth:`add` each piece read, then :meth:`commit`.

    ``add`` is called from the batch's reader thread, pieces in order; the
    slab appears (atomically, by rename) at :meth:`commit`, before the batch's
    fragment. :meth:`around` wraps a batch's block iterator to do both.
    """

    def __init__(self, directory_path: str, number: int, spec: VolumeSpec, prereduce: Prereduce) -> None:
        self.path = slab_name(os.path.abspath(directory_path), number)
        self.spec, self.prereduce, self.number = spec, prereduce, int(number)
        self._tmp = temporary_name(self.path)
        self._fd = -1
        self._offset = 0
        self._pieces: list[dict[str, Any]] = []
        self._abandoned = False

    def add(self, z0: int, z1: int, y0: int, y1: int, data: np.ndarray) -> None:
        """Reduce the piece ``[z0, z1) x [y0, y1)`` (level-0 voxels, all of x) and append it."""
        sx, sy, sz = self.prereduce.step_xyz
        if self._abandoned:
            return
        if z0 % sz or y0 % sy:  # a window would straddle two pieces: no slab, Downsample decodes level 0
            logger.info("%s: piece at z=%d, y=%d is off the steps %s; no slab", self.path, z0, y0, (sx, sy, sz))
            self._abandoned = True
            return
        level = REDUCERS[self.prereduce.mode](np.asarray(data, self.spec.dtype), self.prereduce.step_zyx)
        if self._fd < 0:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        width = self.spec.grid.block_xyz[0]
        chunks = []
        for x in range(0, level.shape[2], width):
            chunk = np.ascontiguousarray(level[:, :, x : x + width], level.dtype.newbyteorder("<"))
            chunk.flags.writeable = False  # a read-only buffer, as the CRC wants
            write_all(self._fd, chunk.data)
            chunks.append([self._offset, chunk.nbytes, checksum(chunk)])
            self._offset += chunk.nbytes
        self._pieces.append({"box_zyx": [z0, z1, y0, y1], "shape_zyx": list(level.shape), "chunks": chunks})

    def commit(self) -> None:
        """Append the footer and publish the slab (no fsync: a cache whose torn copy fails its checks)."""
        if self._abandoned:
            self.abort()
            return
        if self._fd < 0:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        footer = json.dumps(
            {**_identity(self.spec, self.prereduce), "batch": self.number, "pieces": self._pieces}
        ).encode("utf-8")
        write_all(self._fd, footer + _TAIL.pack(len(footer), checksum(footer), MAGIC))
        os.close(self._fd)
        self._fd = -1
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discard the slab being written."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def around(self, blocks: Iterator[Any]) -> Iterator[Any]:
        """Yield ``blocks``; commit the slab when they are exhausted, discard it if they fail."""
        try:
            yield from blocks
        except BaseException:
            self.abort()
            raise
        self.commit()


def level1_slab(directory_path: str, number: int, spec: VolumeSpec, pyramid: dict[str, Any]) -> SlabWriter | None:
    """The slab writer of an ingest batch, or None when no pyramid is asked for or it cannot be pre-reduced.

    ``pyramid`` is what ``Downsample`` passes down (:meth:`Prereduce.for_pyramid`; empty: none).
    An earlier slab of this batch is removed first: the batch is about to be
    rewritten, and a stale slab must never outlive it.
    """
    path = slab_name(os.path.abspath(directory_path), number)
    if os.path.exists(path):
        os.unlink(path)
    prereduce = Prereduce.for_pyramid(spec, pyramid)
    if prereduce is None:
        return None
    if not prereduce.applies_to(spec):
        logger.info("%s: level 1 is not pre-reduced (blocks %s, steps %s, loss %s)", directory_path,
                    spec.grid.block_xyz, prereduce.step_xyz, spec.codec.loss or "none")
        return None
    return SlabWriter(directory_path, number, spec, prereduce)


# ------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Piece:
    """One piece of a slab, in level-1 voxels (z, y; all of x) and where its chunks are."""

    path: str
    z0: int
    z1: int
    y0: int
    y1: int
    nx: int
    chunks: tuple[tuple[int, int, int], ...]  # (offset, bytes, crc32c) per level-1 block column


class BadSlab(Exception):
    """A slab failed a check; the caller decodes level 0 instead."""


def _read_footer(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _TAIL.size:
            raise BadSlab(f"{path}: {size} bytes, shorter than a slab's tail")
        f.seek(size - _TAIL.size)
        length, crc, magic = _TAIL.unpack(f.read(_TAIL.size))
        if magic != MAGIC or length > size - _TAIL.size:
            raise BadSlab(f"{path}: not a slab (magic {magic!r}, footer {length} bytes)")
        f.seek(size - _TAIL.size - length)
        footer = f.read(length)
    if checksum(footer) != crc:
        raise BadSlab(f"{path}: footer fails its CRC-32C")
    try:
        result: dict[str, Any] = json.loads(footer)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadSlab(f"{path}: footer is not JSON: {e}") from e
    return result


class Level1Slabs:
    """Level 1 of a volume read from its ingest batches' slabs (see the module docstring).

    :meth:`open` returns None unless every check passes; :meth:`read` returns
    None for a region whose chunks fail their CRC (the caller then decodes
    level 0 for that region).
    """

    def __init__(self, pieces: Sequence[_Piece], dtype: np.dtype, width: int) -> None:
        self.pieces = list(pieces)
        self.dtype = dtype
        self.width = width

    @classmethod
    def open(cls, level0: Directory, prereduce: Prereduce) -> Level1Slabs | None:
        """The slabs of ``level0`` made with ``prereduce``'s step and mode, or None (with the reason logged)."""
        try:
            return cls._open(level0, prereduce)
        except (BadSlab, OSError, KeyError, TypeError, ValueError) as e:
            logger.info("%s: level 1 decoded from level 0 (%s)", level0.directory_filename, e)
            return None

    @classmethod
    def _open(cls, level0: Directory, prereduce: Prereduce) -> Level1Slabs:
        path = os.path.abspath(level0.directory_filename)
        if level0.remote:
            raise BadSlab("a remote volume")
        spec = level0.spec
        if not prereduce.applies_to(spec):
            raise BadSlab(f"blocks {spec.grid.block_xyz} and steps {prereduce.step_xyz} cannot be pre-reduced")
        want = _identity(spec, prereduce)
        newest = os.stat(path).st_mtime_ns
        names = level0.block_filenames
        numbers = [block_file_number(path, resolve_block_path(path, n)) for n in names]
        if not names or any(k is None for k in numbers):
            raise BadSlab(f"block files {[os.path.basename(n) for n in names][:4]}... are not all batch files")
        gz, gy, gx = spec.grid.grid_shape
        bx, by, bz = spec.grid.block_xyz
        sx, sy, sz = prereduce.step_xyz
        owner = np.full((gz, gy), -1, np.int64)  # which block file's slab covers each (z row, y row)
        pieces: list[_Piece] = []
        for file_id, number in enumerate(numbers, start=1):
            slab = slab_name(path, int(number))  # type: ignore[arg-type]  # None excluded above
            if os.stat(slab).st_mtime_ns > newest:
                raise BadSlab(f"{slab} is newer than the directory file")
            footer = _read_footer(slab)
            have = {k: footer.get(k) for k in want}
            if have != want or footer.get("batch") != number:
                raise BadSlab(f"{slab} was made for {have} (batch {footer.get('batch')}), not {want} (batch {number})")
            for piece in footer["pieces"]:
                z0, z1, y0, y1 = (int(v) for v in piece["box_zyx"])
                if z0 % bz or y0 % by or not (z0 < z1 <= spec.grid.extent_xyz[2] and y0 < y1):
                    raise BadSlab(f"{slab}: piece {piece['box_zyx']} is not a piece of block rows")
                rows = owner[z0 // bz : -(-z1 // bz), y0 // by : -(-y1 // by)]
                if (rows != -1).any():
                    raise BadSlab(f"{slab}: piece {piece['box_zyx']} overlaps another slab's")
                rows[...] = file_id
                nz, ny, nx = (int(v) for v in piece["shape_zyx"])
                if (nz, ny, nx) != (-(-(z1 - z0) // sz), -(-(y1 - y0) // sy), -(-spec.grid.extent_xyz[0] // sx)):
                    raise BadSlab(f"{slab}: piece {piece['box_zyx']} has level-1 shape {piece['shape_zyx']}")
                chunks = tuple((int(o), int(n), int(c)) for o, n, c in piece["chunks"])
                if len(chunks) != -(-nx // bx):
                    raise BadSlab(f"{slab}: piece {piece['box_zyx']} has {len(chunks)} chunks")
                pieces.append(_Piece(slab, z0 // sz, z0 // sz + nz, y0 // sy, y0 // sy + ny, nx, chunks))
        if (owner == -1).any():
            raise BadSlab("the slabs do not cover the volume")
        files = np.asarray(level0.index["file"]).reshape(gz, gy, gx)
        expected = np.broadcast_to(owner[:, :, None], (gz, gy, gx))
        if ((files != 0) & (files != expected)).any():
            raise BadSlab("blocks were rewritten since ingest (they lie in another block file than their slab's)")
        logger.info("%s: level 1 read from %d slabs", path, len(numbers))
        return cls(pieces, np.dtype(spec.dtype), bx)

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """Level-1 voxels ``[z0, z1) x [y0, y1) x [x0, x1)`` (``x0`` on a block column), or None if a chunk is bad."""
        if x0 % self.width:
            return None
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), self.dtype)
        filled = 0
        for p in self.pieces:
            lz, hz, ly, hy = max(z0, p.z0), min(z1, p.z1), max(y0, p.y0), min(y1, p.y1)
            if lz >= hz or ly >= hy:
                continue
            for c in range(x0 // self.width, -(-min(x1, p.nx) // self.width)):
                offset, nbytes, crc = p.chunks[c]
                cx0 = c * self.width
                cw = min(self.width, p.nx - cx0)
                with open(p.path, "rb") as f:
                    raw = os.pread(f.fileno(), nbytes, offset)
                if len(raw) != nbytes or checksum(raw) != crc:
                    logger.warning("%s: chunk at byte %d fails its CRC-32C; decoding level 0 there", p.path, offset)
                    return None
                chunk = np.frombuffer(raw, self.dtype.newbyteorder("<")).reshape(p.z1 - p.z0, p.y1 - p.y0, cw)
                lx, hx = max(x0, cx0), min(x1, cx0 + cw)
                out[lz - z0 : hz - z0, ly - y0 : hy - y0, lx - x0 : hx - x0] = chunk[
                    lz - p.z0 : hz - p.z0, ly - p.y0 : hy - p.y0, lx - cx0 : hx - cx0
                ]
                filled += (hz - lz) * (hy - ly) * (hx - lx)
        return out if filled == out.size else None


def level1_reader(level0: Directory, prereduce: Prereduce | None) -> Callable[..., np.ndarray | None] | None:
    """:meth:`Level1Slabs.read` of ``level0``'s slabs, or None to decode level 0 (no slabs, or a failed check)."""
    if prereduce is None:
        return None
    slabs = Level1Slabs.open(level0, prereduce)
    return None if slabs is None else slabs.read
