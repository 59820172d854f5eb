"""The writing side of an HDF5 export: what is exported (:class:`ExportJob`) and the one file writer.

:class:`ExportJob` is what every process of an export knows: the volume, the
planes ``[z0, z1)`` (on block rows), the blocks present in them, and the chunk
encoder. :class:`ChunkWriter` is the one process that writes the file: it
creates or checks the dataset, keeps the resume record
(:mod:`~blockfs_tasks.export.hdf5_record`) and writes encoded chunks.

Layout of the dataset: shape (z, y, x) and dtype of the volume; chunks = the
block shape (z, y, x), clipped to the extent on an axis shorter than one
block, so every block becomes exactly one chunk; fill value 0 and no chunk for
an absent block. Other objects in an existing file are kept. An existing
dataset of the same name is reused when its shape, dtype, chunks, fill value
and filters are the export's (like ``h5py.Group.require_dataset``, which makes
a resume possible); otherwise :class:`DatasetMismatchError` names what is there
and what was wanted.

Crash safety: the writer writes through
:class:`~blockfs_tasks.export.rollback.JournaledFile` (h5py's ``fileobj``
driver), so a session that does not reach :meth:`ChunkWriter.finish` is rolled
back, and the file is exactly what it was before it (see
:mod:`blockfs_tasks.export.hdf5`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import Directory
from ..core.errors import DestinationError, OutOfBoundsError
from ..core.grid import BlockGrid
from ..core.optional import require
from .errors import DatasetMismatchError
from .hdf5_chunks import ChunkEncoder, Hdf5Filters, dataset_pipeline, describe_pipeline
from .hdf5_record import add_interval, read_record, remove_interval, write_record
from .planes import VolumeLike, open_volume, resolve_z_range
from .rollback import JournaledFile, roll_back

if TYPE_CHECKING:
    import h5py

logger = logging.getLogger(__name__)

__all__ = [
    "ChunkWriter",
    "EncodedChunk",
    "ExportJob",
    "Hdf5ExportResult",
    "OriginXYZ",
    "absent_blocks",
    "check_plane_range",
    "chunk_shape_of",
    "present_blocks",
]

#: A block's origin in voxels, (x, y, z) order.
OriginXYZ = tuple[int, int, int]

#: One encoded chunk: (chunk offset (z, y, x), stored bytes, filter mask, bytes of the block's voxels).
EncodedChunk = tuple[tuple[int, int, int], bytes, int, int]


def check_plane_range(directory: Directory, z0: int = 0, z1: int | None = None) -> tuple[int, int]:
    """Validate planes ``[z0, z1)`` (``z1=None``: to the end); they must lie on block rows."""
    z0, z1 = resolve_z_range(directory, z0, z1)
    nz, bz = directory.shape[0], directory.grid.block_shape[0]
    if z0 % bz or (z1 % bz and z1 != nz):
        raise OutOfBoundsError(
            f"planes [z0, z1) = [{z0}, {z1}) do not start and end on block rows: expected multiples "
            f"of the z block size {bz} (or z1 = {nz}, the volume's z extent)"
        )
    return z0, z1


def _row_positions(grid: BlockGrid, z0: int, z1: int) -> tuple[int, int]:
    """First and past-the-end block positions of the block rows covering planes [z0, z1)."""
    _, gy, gx = grid.grid_shape
    bz = grid.block_shape[0]
    return (z0 // bz) * gy * gx, (-(-z1 // bz)) * gy * gx


def present_blocks(directory: Directory, z0: int, z1: int) -> list[OriginXYZ]:
    """Origins (x, y, z) of the blocks present in planes ``[z0, z1)``, in position order."""
    start, stop = _row_positions(directory.grid, z0, z1)
    files = directory.index["file"][start:stop]
    return [directory.grid.origin(start + int(i)) for i in np.flatnonzero(files)]


def absent_blocks(directory: Directory, z0: int, z1: int) -> list[OriginXYZ]:
    """Origins (x, y, z) of the block positions of planes ``[z0, z1)`` that hold no block."""
    start, stop = _row_positions(directory.grid, z0, z1)
    files = directory.index["file"][start:stop]
    return [directory.grid.origin(start + int(i)) for i in np.flatnonzero(files == 0)]


def chunk_shape_of(grid: BlockGrid) -> tuple[int, int, int]:
    """HDF5 chunk shape (z, y, x): the block shape, clipped to the extent (HDF5 requires it)."""
    cz, cy, cx = (min(b, e) for b, e in zip(grid.block_shape, grid.shape, strict=True))
    return cz, cy, cx


@dataclass(frozen=True)
class ExportJob:
    """What every process knows about one export: source, planes, its blocks, encoder."""

    directory: Directory
    source: str
    z0: int
    z1: int
    chunks: tuple[int, int, int]
    blocks: list[OriginXYZ]
    encoder: ChunkEncoder

    @classmethod
    def prepare(cls, src: VolumeLike, filters: Hdf5Filters, z0: int = 0, z1: int | None = None) -> ExportJob:
        directory = open_volume(src)
        z0, z1 = check_plane_range(directory, z0, z1)
        chunks = chunk_shape_of(directory.grid)
        return cls(
            directory,
            directory.directory_filename,
            z0,
            z1,
            chunks,
            present_blocks(directory, z0, z1),
            ChunkEncoder(filters, chunks, directory.dtype),
        )

    def encode_at(self, origin: OriginXYZ) -> EncodedChunk:
        """Read, pad and compress the block at ``origin`` (x, y, z)."""
        x, y, z = origin
        block = self.directory.read_block(x, y, z)
        data, mask = self.encoder.encode(block)
        return (z, y, x), data, mask, block.nbytes


def _open_destination(dest: str) -> tuple[h5py.File, JournaledFile]:
    """Open (or create) ``dest``, and its folder, for a rollback-journaled session.

    Errors say what is wrong; a dead writer's session is rolled back first.
    """
    h5py = require("h5py", None, "HDF5 export")
    folder = os.path.dirname(os.path.abspath(dest))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DestinationError(f"{dest}: cannot create the HDF5 file: {folder} is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DestinationError(
            f"{dest}: cannot create the folder {folder} for the HDF5 file: {e.strerror or e}"
        ) from e
    if os.path.isdir(dest):
        raise DestinationError(f"{dest} is a folder: expected the path of an HDF5 file")
    if os.path.exists(dest):
        if not os.access(dest, os.W_OK):
            raise DestinationError(f"{dest}: the HDF5 file is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise DestinationError(f"{dest}: cannot create the HDF5 file: folder {folder} is not writable")
    try:
        raw = JournaledFile(dest)
    except OSError as e:
        if isinstance(e, DestinationError):
            raise
        raise DestinationError(f"{dest}: cannot open the file for writing: {e.strerror or e}") from e
    try:
        return h5py.File(raw, "r+" if raw.original_size else "w"), raw
    except OSError as e:
        existed = raw.original_size > 0
        try:
            roll_back(dest, own=True)  # whatever HDF5 wrote while failing; the file is as it was
        finally:
            raw.close()
        if not existed:
            _remove_empty(dest)
        what = "open the existing file" if existed else "create the file"
        raise DestinationError(f"{dest}: cannot {what} as HDF5 for writing: {e}") from e


def _remove_empty(path: str) -> None:
    """Remove ``path`` if it is an empty file (one this export created and never wrote)."""
    try:
        if os.path.getsize(path) == 0:
            os.unlink(path)
    except OSError:
        pass


def _describe_dataset(shape: Any, dtype: Any, chunks: Any, fill: Any, pipeline: str) -> str:
    return (
        f"shape (z, y, x) {tuple(shape)}, dtype {np.dtype(dtype).name}, chunks {chunks}, fill value {fill}, "
        f"{pipeline}"
    )


class ChunkWriter:
    """The one process that writes the file: owns the dataset and its record.

    Opening creates or checks the dataset and removes ``[z0, z1)`` from the
    record; :meth:`finish` adds it back once every chunk is written.
    """

    def __init__(self, dest: str | os.PathLike[str], name: str, job: ExportJob, filters: Hdf5Filters) -> None:
        self.dest, self.name, self.job = os.fspath(dest), name, job
        self.chunks_written = 0
        self.stored_bytes = 0
        self.raw_bytes = 0
        self.file, self.raw = _open_destination(self.dest)
        try:
            self.dataset, self.created = self._require_dataset(filters)
            source, done = read_record(self.dataset)
            if source != job.source:
                done = []
            write_record(self.dataset, job.source, remove_interval(done, job.z0, job.z1))
            self.file.flush()
        except BaseException:
            self.close()
            raise

    def _require_dataset(self, filters: Hdf5Filters) -> tuple[h5py.Dataset, bool]:
        h5py = require("h5py", None, "HDF5 export")
        d = self.job.directory
        shape, dtype, chunks = d.shape, d.dtype, self.job.chunks
        wanted = _describe_dataset(shape, dtype, chunks, 0, filters.describe())
        existing = self.file.get(self.name)
        if existing is None:
            try:
                dset = self.file.create_dataset(
                    self.name, shape=shape, dtype=dtype, chunks=chunks, fillvalue=0, **filters.dataset_kwargs()
                )
            except (ValueError, TypeError, OSError) as e:
                raise DestinationError(f"{self.dest}: cannot create dataset {self.name!r} ({wanted}): {e}") from e
            logger.info("%s: created dataset %r (%s)", self.dest, self.name, wanted)
            return dset, True
        if not isinstance(existing, h5py.Dataset):
            raise DatasetMismatchError(
                f"{self.dest}: {self.name!r} exists and is a group, not a dataset; this export needs a dataset "
                f"with {wanted} (from {self.job.source}). Remove it or export under another name."
            )
        pipeline = dataset_pipeline(existing)
        have = _describe_dataset(
            existing.shape, existing.dtype, existing.chunks, existing.fillvalue, describe_pipeline(pipeline)
        )
        if (
            existing.shape != shape
            or existing.dtype != dtype
            or existing.chunks != chunks
            or existing.fillvalue != 0
            or pipeline != filters.pipeline()
        ):
            raise DatasetMismatchError(
                f"{self.dest}: dataset {self.name!r} exists with {have}; this export needs {wanted} "
                f"(from {self.job.source}). Remove it or export under another name."
            )
        logger.info("%s: reusing dataset %r (%s)", self.dest, self.name, have)
        return existing, False

    def write(self, offset: tuple[int, int, int], data: bytes, mask: int, raw: int) -> None:
        """Write one chunk's stored bytes at chunk offset (z, y, x)."""
        self.dataset.id.write_direct_chunk(offset, data, mask)
        self.chunks_written += 1
        self.stored_bytes += len(data)
        self.raw_bytes += raw

    def clear_stale_chunks(self) -> int:
        """Zero the chunks of absent blocks that an earlier export left in a reused dataset."""
        if self.created:
            return 0
        zeros: tuple[bytes, int] | None = None
        n = 0
        for x, y, z in absent_blocks(self.job.directory, self.job.z0, self.job.z1):
            if self.dataset.id.get_chunk_info_by_coord((z, y, x)).byte_offset is None:
                continue
            if zeros is None:
                zeros = self.job.encoder.encode(np.zeros(self.job.chunks, self.job.directory.dtype))
            self.write((z, y, x), zeros[0], zeros[1], 0)
            n += 1
        if n:
            logger.info("%s: zeroed %d chunks of blocks absent from %s", self.dest, n, self.job.source)
        return n

    def finish(self) -> None:
        """Record ``[z0, z1)`` as complete, close the HDF5 file and commit the session (fsync, drop the journal)."""
        _, done = read_record(self.dataset)
        write_record(self.dataset, self.job.source, add_interval(done, self.job.z0, self.job.z1))
        self.file.close()
        self.raw.commit()

    def close(self) -> None:
        """Release the file; a session not committed by :meth:`finish` is rolled back (the file is as before)."""
        try:
            if self.file.id.valid:
                self.file.close()
        finally:
            try:
                if not self.raw.committed:
                    roll_back(self.dest, own=True)
            finally:
                self.raw.close()
                if not self.raw.committed and self.raw.original_size == 0:
                    _remove_empty(self.dest)  # a file this export created: gone again


@dataclass(frozen=True)
class Hdf5ExportResult:
    """What an export did: chunks written, voxel bytes of the blocks exported, bytes stored, time."""

    dest: str
    name: str
    z0: int
    z1: int
    chunks_written: int
    raw_bytes: int
    stored_bytes: int
    seconds: float
    ranks: int = 1

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s of the exported blocks' voxel bytes (absent blocks count nothing)."""
        return self.raw_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
