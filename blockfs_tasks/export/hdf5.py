"""Export a blockfs volume (or a range of its planes) into ONE HDF5 dataset.

Layout of the dataset
---------------------
* Shape (z, y, x) and dtype of the volume; chunks = the block shape (z, y, x)
  (clipped to the extent on an axis shorter than one block), so block and chunk
  grids coincide and every block becomes exactly one chunk.
* Filters: ``gzip`` (deflate, level from ``compression_opts``, default 4 like
  h5py), ``lzf`` or ``none``, with an optional byte ``shuffle`` before them.
* Fill value 0 and no chunk for an absent block, so absent blocks read as zeros.
* Other objects in an existing file are kept. An existing dataset of the same
  name is reused when its shape, dtype, chunks, fill value and filters are the
  export's (like ``h5py.Group.require_dataset``, which makes a resume possible);
  otherwise :class:`DatasetMismatchError` names what is there and what was wanted.

How chunks are written
----------------------
HDF5 applies its filters itself only in the process that calls ``H5Dwrite``,
one chunk at a time. Instead the exporter runs the filter pipeline in Python,
in parallel: each edge block is padded with zeros to the full chunk shape (HDF5
chunks are always full-size), byte-shuffled if the dataset has the shuffle
filter (HDF5's transposition of the bytes of each element), then compressed
into a zlib stream (what HDF5's deflate filter stores; written by libdeflate
from imagecodecs when available, 2-3x faster than zlib, else by zlib) or raw
LZF (``imagecodecs.lzf_encode``, which h5py's LZF filter decodes). A chunk that
would not shrink is stored unfiltered with that filter's bit set in the chunk's
filter mask, as HDF5 does for optional filters. One process writes the bytes
with ``H5Dwrite_chunk`` (``dset.id.write_direct_chunk``): one file writer, many
compressors, no parallel HDF5 needed.

How the work is split
---------------------
The planes ``[z0, z1)`` must start and end on block rows. Only the blocks
present in them are exported (absent ones are left to the fill value). With
one process (:func:`export_hdf5` without ``comm``) ``n_threads`` threads read,
pad and compress them in block position order while the calling thread writes.
Under ``mpiexec -n N`` (:mod:`blockfs_tasks.export.hdf5_mpi`) every rank reads,
pads and compresses, and rank 0 owns the file. Rank 0 hands the blocks out as
it goes: each other rank starts with a few, sends each compressed chunk to rank
0 as a point-to-point message, and gets the index of its next block (or "none
left") in reply, so a faster rank takes more blocks and all finish together.
Rank 0 compresses and writes blocks of its own and, between them, writes and
answers the chunks that have arrived; each other rank ends with a sentinel
message, and rank 0 is done when it has one per other rank. The only
collective calls are two ``allgather`` that every rank makes exactly once
(after setup and at the end, to agree on success), so an uneven split (more
ranks than blocks, a slow rank) never hangs.

Resume
------
The dataset's attributes record what is complete, so the record lives and dies
with the data (a deleted or replaced file cannot leave a stale marker behind):

* ``blockfs_source``: absolute path of the exported directory file.
* ``blockfs_planes_done``: an (n, 2) int64 array of disjoint, sorted plane
  ranges ``[z0, z1)`` that are completely written.

An export of ``[z0, z1)`` first removes that range from the record (and clears
the record if it came from another source), writes its chunks, then adds the
range back and flushes the file. For a Luigi layer: :func:`hdf5_slabs` plans
the ranges (one task each), a task's ``complete()`` is :func:`planes_complete`
(opens the file read-only without locking, ~2 ms), and its ``run()`` calls
:func:`export_hdf5` with ``z0``/``z1``, or launches ``mpiexec -n N
blockfs2hdf ... --z0 Z0 --z1 Z1`` as a subprocess (MPI must not start inside a
Luigi worker). A serial HDF5 file has one writer at a time, so slab tasks
writing the same file must not run at the same time (a Luigi resource with a
limit of 1 per file; a second writer gets :class:`DestinationError`).

Crash safety
------------
HDF5 itself is not crash-safe: a writer killed while HDF5 flushes its metadata
can leave a file that no later open repairs (an index pointing past the
superblock's end of allocation). So the writer process writes through
:class:`~blockfs_tasks.export.rollback.JournaledFile` (h5py's ``fileobj``
driver): every byte of the file as it was is saved, fsynced, in
``<file>.blockfs-rollback`` before HDF5 overwrites it, and the journal is
removed only after the session's record is written and the file fsynced. A
writer killed at any instant leaves the journal; the next export (or a failed
one, at once) rolls the file back to exactly what it was before that session,
so other datasets and the ranges recorded as done survive, and the range is
exported again. :func:`completed_planes` reads through the journal (a reader
never writes), so it sees the file as it was before an unfinished session.
The folder of the file is created if missing.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from contextlib import nullcontext
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import Directory
from ..core.errors import (
    ConfigurationError,
    DatasetMismatchError,
    DestinationError,
    OutOfBoundsError,
)
from ..core.grid import BlockGrid
from ..core.parallel import bounded_map
from .rollback import JournaledFile, RolledBackView, pending_rollback, roll_back

if TYPE_CHECKING:
    import h5py

logger = logging.getLogger(__name__)

__all__ = [
    "COMPRESSIONS",
    "DONE_ATTR",
    "SOURCE_ATTR",
    "ChunkEncoder",
    "ChunkWriter",
    "ExportJob",
    "Hdf5ExportResult",
    "Hdf5Filters",
    "check_plane_range",
    "completed_planes",
    "export_hdf5",
    "hdf5_slabs",
    "planes_complete",
    "present_blocks",
]

COMPRESSIONS = ("gzip", "lzf", "none")
DEFAULT_GZIP_LEVEL = 4
DONE_ATTR = "blockfs_planes_done"
SOURCE_ATTR = "blockfs_source"

# HDF5 filter identifiers (H5Zpublic.h; 32000 is h5py's registered LZF filter).
FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_LZF = 32000
_FILTER_NAMES = {FILTER_DEFLATE: "gzip", FILTER_SHUFFLE: "shuffle", FILTER_LZF: "lzf"}

Offset = tuple[int, int, int]
#: ``progress(done, total)`` in chunks of present blocks written (see :func:`export_hdf5`).
Progress = Callable[[int, int], None]


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a dependency
        raise ImportError("install h5py (pip install h5py) to export to HDF5") from e
    return h5py


# ------------------------------------------------------------------ filters
@dataclass(frozen=True)
class Hdf5Filters:
    """The dataset's filter pipeline: compression, gzip level, byte shuffle.

    ``compression`` is "gzip", "lzf" or "none" (``None`` means "none");
    ``level`` is gzip's 0-9 (default 4) and must be ``None`` for the others.
    """

    compression: str | None = "gzip"
    level: int | None = None
    shuffle: bool = False

    def __post_init__(self) -> None:
        compression = "none" if self.compression is None else str(self.compression).lower()
        if compression not in COMPRESSIONS:
            raise ConfigurationError(
                f"Expected a compression from {COMPRESSIONS}. Got {self.compression!r} instead."
            )
        level = self.level
        if compression == "gzip":
            level = DEFAULT_GZIP_LEVEL if level is None else level
            if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 9:
                raise ConfigurationError(
                    f"Expected a gzip level (compression_opts) from the inclusive range (0, 9). Got {level!r} instead."
                )
            level = int(level)
        elif level is not None:
            raise ConfigurationError(
                f"Compression {compression!r} takes no compression_opts. Got {level!r} instead."
            )
        object.__setattr__(self, "compression", compression)
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "shuffle", bool(self.shuffle))

    def dataset_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``h5py.Group.create_dataset``."""
        kwargs: dict[str, Any] = {"shuffle": self.shuffle}
        if self.compression == "gzip":
            kwargs.update(compression="gzip", compression_opts=self.level)
        elif self.compression == "lzf":
            kwargs["compression"] = "lzf"
        return kwargs

    def pipeline(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """(filter id, parameters that matter) in HDF5's order: shuffle, then the compressor."""
        out: list[tuple[int, tuple[int, ...]]] = []
        if self.shuffle:
            out.append((FILTER_SHUFFLE, ()))
        if self.compression == "gzip":
            out.append((FILTER_DEFLATE, (self.level,)))  # type: ignore[arg-type]
        elif self.compression == "lzf":
            out.append((FILTER_LZF, ()))
        return tuple(out)

    def describe(self) -> str:
        return _describe_pipeline(self.pipeline())


def _describe_pipeline(pipeline: Iterable[tuple[int, tuple[int, ...]]]) -> str:
    parts = []
    for fid, params in pipeline:
        name = _FILTER_NAMES.get(fid, f"filter {fid}")
        parts.append(f"{name} level {params[0]}" if fid == FILTER_DEFLATE and params else name)
    return " + ".join(parts) or "no filters"


def _dataset_pipeline(dset: h5py.Dataset) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """The filter pipeline of an existing dataset, with the parameters that matter."""
    plist = dset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        fid, _flags, values, _name = plist.get_filter(i)
        out.append((int(fid), (int(values[0]),) if fid == FILTER_DEFLATE and values else ()))
    return tuple(out)


# ------------------------------------------------------------------ encoder
def _deflate_function() -> Callable[[Any, int], bytes]:
    """A zlib-stream compressor: libdeflate (imagecodecs) when present, else zlib.

    Both write a standard zlib stream, which HDF5's deflate filter reads;
    libdeflate is 2-3x faster than zlib at levels 1-6 for similar sizes.
    """
    try:
        import imagecodecs

        if imagecodecs.DEFLATE.available:
            encode = imagecodecs.deflate_encode
            return lambda data, level: encode(data, level=level)
    except (ImportError, AttributeError):
        pass
    return zlib.compress


class ChunkEncoder:
    """Turn a (possibly truncated) block into the bytes HDF5 stores for its chunk.

    Pads to ``chunk_shape`` with zeros, then applies the pipeline of ``filters``
    in HDF5's order. Returns ``(bytes, filter_mask)`` for ``write_direct_chunk``:
    bit ``i`` of the mask is set when filter ``i`` was skipped because its
    output would not have been smaller (stored as HDF5 stores an optional filter
    that failed). Thread-safe: it holds no mutable state.
    """

    def __init__(self, filters: Hdf5Filters, chunk_shape: tuple[int, int, int], dtype: Any) -> None:
        self.filters = filters
        self.pipeline = filters.pipeline()
        self.chunk_shape = tuple(int(c) for c in chunk_shape)
        self.dtype = np.dtype(dtype)
        self._lzf: Callable[[Any], bytes] | None = None
        self._deflate = _deflate_function()
        if filters.compression == "lzf":
            try:
                from imagecodecs import lzf_encode
            except ImportError as e:
                raise ImportError("install imagecodecs (pip install imagecodecs) to export with LZF") from e
            self._lzf = lzf_encode

    def encode(self, block: np.ndarray) -> tuple[bytes, int]:
        """The stored bytes and filter mask of the chunk holding ``block`` (z, y, x)."""
        block = np.asarray(block)
        if block.shape != self.chunk_shape:
            padded = np.zeros(self.chunk_shape, self.dtype)
            padded[: block.shape[0], : block.shape[1], : block.shape[2]] = block
            block = padded
        data = np.ascontiguousarray(block, dtype=self.dtype).reshape(-1).view(np.uint8)
        mask = 0
        for i, (fid, params) in enumerate(self.pipeline):
            if fid == FILTER_SHUFFLE:
                if self.dtype.itemsize > 1:
                    data = np.ascontiguousarray(data.reshape(-1, self.dtype.itemsize).T).reshape(-1)
                continue
            if fid == FILTER_DEFLATE:
                out = self._deflate(data, params[0])
            else:
                out = self._lzf(data)  # type: ignore[misc]
            if len(out) < data.nbytes:
                return out, mask
            mask |= 1 << i
        return data.tobytes(), mask


# ------------------------------------------------------------------ planning
def check_plane_range(grid: BlockGrid, z0: int = 0, z1: int | None = None) -> tuple[int, int]:
    """Validate planes ``[z0, z1)`` (``z1=None``: to the end); they must lie on block rows."""
    nz, bz = grid.shape[0], grid.block_shape[0]
    z1 = nz if z1 is None else z1
    for label, value in (("z0", z0), ("z1", z1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigurationError(f"Expected an integer {label}. Got {value!r} instead.")
    z0, z1 = int(z0), int(z1)
    if not 0 <= z0 <= z1 <= nz:
        raise OutOfBoundsError(
            f"planes [z0, z1) = [{z0}, {z1}) are outside the volume: expected 0 <= z0 <= z1 <= {nz}"
        )
    if z0 % bz or (z1 % bz and z1 != nz):
        raise OutOfBoundsError(
            f"planes [z0, z1) = [{z0}, {z1}) do not start and end on block rows: expected multiples "
            f"of the z block size {bz} (or z1 = {nz}, the volume's z extent)"
        )
    return z0, z1


def hdf5_slabs(grid: BlockGrid, block_rows: int = 1) -> list[tuple[int, int]]:
    """Plane ranges ``[z0, z1)`` of ``block_rows`` block rows each, covering the volume.

    One range per Luigi task: each is a valid ``z0``/``z1`` for :func:`export_hdf5`.
    """
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
        raise ConfigurationError(f"Expected a positive number of block rows per slab. Got {block_rows!r} instead.")
    nz, step = grid.shape[0], grid.block_shape[0] * int(block_rows)
    return [(z, min(z + step, nz)) for z in range(0, nz, step)]


def _row_positions(grid: BlockGrid, z0: int, z1: int) -> tuple[int, int]:
    """First and past-the-end block positions of the block rows covering planes [z0, z1)."""
    _, gy, gx = grid.grid_shape
    bz = grid.block_shape[0]
    return (z0 // bz) * gy * gx, (-(-z1 // bz)) * gy * gx


def present_blocks(directory: Directory, z0: int, z1: int) -> list[Offset]:
    """Origins (x, y, z) of the blocks present in planes ``[z0, z1)``, in position order."""
    start, stop = _row_positions(directory.grid, z0, z1)
    files = directory.index["file"][start:stop]
    return [directory.grid.origin(start + int(i)) for i in np.flatnonzero(files)]


def _absent_blocks(directory: Directory, z0: int, z1: int) -> list[Offset]:
    start, stop = _row_positions(directory.grid, z0, z1)
    files = directory.index["file"][start:stop]
    return [directory.grid.origin(start + int(i)) for i in np.flatnonzero(files == 0)]


def chunk_shape_of(grid: BlockGrid) -> tuple[int, int, int]:
    """HDF5 chunk shape (z, y, x): the block shape, clipped to the extent (HDF5 requires it)."""
    return tuple(min(b, e) for b, e in zip(grid.block_shape, grid.shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class ExportJob:
    """What every process knows about one export: source, planes, its blocks, encoder."""

    directory: Directory
    source: str
    z0: int
    z1: int
    chunks: tuple[int, int, int]
    blocks: list[Offset]
    encoder: ChunkEncoder

    @classmethod
    def prepare(
        cls, src: Directory | str | os.PathLike[str], filters: Hdf5Filters, z0: int = 0, z1: int | None = None
    ) -> ExportJob:
        directory = src if isinstance(src, Directory) else Directory.open(src)
        z0, z1 = check_plane_range(directory.grid, z0, z1)
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

    def encode_at(self, origin: Offset) -> tuple[Offset, bytes, int, int]:
        """Read, pad and compress the block at ``origin`` (x, y, z).

        Returns (chunk offset (z, y, x), stored bytes, filter mask, bytes of the block's voxels).
        """
        x, y, z = origin
        block = self.directory.read_block(x, y, z)
        data, mask = self.encoder.encode(block)
        return (z, y, x), data, mask, block.nbytes


# ------------------------------------------------------------------ record
Intervals = list[tuple[int, int]]


def _add_interval(intervals: Intervals, z0: int, z1: int) -> Intervals:
    if z0 >= z1:
        return list(intervals)
    merged: Intervals = []
    for a, b in sorted([*intervals, (z0, z1)]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _remove_interval(intervals: Intervals, z0: int, z1: int) -> Intervals:
    out: Intervals = []
    for a, b in intervals:
        if b <= z0 or a >= z1:
            out.append((a, b))
            continue
        if a < z0:
            out.append((a, z0))
        if b > z1:
            out.append((z1, b))
    return out


def _read_record(dset: h5py.Dataset) -> tuple[str | None, Intervals]:
    source = dset.attrs.get(SOURCE_ATTR)
    if isinstance(source, bytes):
        source = source.decode()
    done = np.asarray(dset.attrs.get(DONE_ATTR, np.zeros((0, 2), np.int64))).reshape(-1, 2)
    return source, [(int(a), int(b)) for a, b in done]


def _write_record(dset: h5py.Dataset, source: str, intervals: Intervals) -> None:
    dset.attrs[SOURCE_ATTR] = source
    dset.attrs[DONE_ATTR] = np.asarray(intervals, np.int64).reshape(-1, 2)


def completed_planes(
    dest: str | os.PathLike[str], name: str, src: str | os.PathLike[str] | None = None
) -> Intervals:
    """Plane ranges ``[z0, z1)`` recorded as completely exported in ``dest``/``name``.

    Empty when the file or dataset does not exist, when ``src`` is given and the
    record is of another source, or when the file cannot be read now (another
    process may be writing it: re-exporting a range is always safe).
    """
    dest = os.fspath(dest)
    if not os.path.isfile(dest):
        return []
    h5py = _import_h5py()
    try:
        # A journal means a writer is at work or died: read the file as it was before that session.
        view = RolledBackView(dest) if pending_rollback(dest) else None
        with view or nullcontext(), h5py.File(view or dest, "r", locking=False) as f:
            dset = f.get(name)
            if not isinstance(dset, h5py.Dataset):
                return []
            source, done = _read_record(dset)
    except OSError as e:
        logger.warning("%s: cannot read the export record (%s); treating nothing as complete", dest, e)
        return []
    if src is not None and source != os.path.abspath(os.fspath(src)):
        return []
    return done


def planes_complete(
    dest: str | os.PathLike[str], name: str, z0: int, z1: int, src: str | os.PathLike[str] | None = None
) -> bool:
    """True if planes ``[z0, z1)`` of ``src`` are recorded as exported to ``dest``/``name``."""
    return any(a <= z0 and z1 <= b for a, b in completed_planes(dest, name, src))


# ------------------------------------------------------------------ writer
def _open_destination(dest: str) -> tuple[h5py.File, JournaledFile]:
    """Open (or create) ``dest``, and its folder, for a rollback-journaled session.

    Errors say what is wrong; a dead writer's session is rolled back first.
    """
    h5py = _import_h5py()
    folder = os.path.dirname(os.path.abspath(dest))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DestinationError(f"{dest}: cannot create the HDF5 file: {folder} is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DestinationError(f"{dest}: cannot create the folder {folder} for the HDF5 file: {e.strerror or e}") from e
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
    return f"shape (z, y, x) {tuple(shape)}, dtype {np.dtype(dtype).name}, chunks {chunks}, fill value {fill}, {pipeline}"


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
            source, done = _read_record(self.dataset)
            if source != job.source:
                done = []
            _write_record(self.dataset, job.source, _remove_interval(done, job.z0, job.z1))
            self.file.flush()
        except BaseException:
            self.close()
            raise

    def _require_dataset(self, filters: Hdf5Filters) -> tuple[h5py.Dataset, bool]:
        h5py = _import_h5py()
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
        pipeline = _dataset_pipeline(existing)
        have = _describe_dataset(
            existing.shape, existing.dtype, existing.chunks, existing.fillvalue, _describe_pipeline(pipeline)
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

    def write(self, offset: Offset, data: bytes, mask: int, raw: int) -> None:
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
        for x, y, z in _absent_blocks(self.job.directory, self.job.z0, self.job.z1):
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
        _, done = _read_record(self.dataset)
        _write_record(self.dataset, self.job.source, _add_interval(done, self.job.z0, self.job.z1))
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


# ------------------------------------------------------------------ export
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


def export_hdf5(
    src: Directory | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    name: str,
    *,
    compression: str | None = "gzip",
    compression_opts: int | None = None,
    shuffle: bool = False,
    z0: int = 0,
    z1: int | None = None,
    n_threads: int | None = None,
    comm: Any = None,
    progress: Progress | None = None,
) -> Hdf5ExportResult:
    """Export planes ``[z0, z1)`` of a blockfs volume into dataset ``name`` of ``dest``.

    Parameters
    ----------
    src
        The volume: a :class:`Directory` or the path of its directory file.
    dest
        HDF5 file; created if missing, other objects in it are kept.
    name
        Dataset path inside the file (intermediate groups are created).
    compression, compression_opts, shuffle
        "gzip" (with a 0-9 level, default 4), "lzf" or "none"; byte shuffle first.
    z0, z1
        Planes to export, on block rows; default the whole volume. Exporting
        the ranges of :func:`hdf5_slabs` one by one gives the same dataset as
        one whole export, and each completed range is recorded in the dataset.
    n_threads
        Compressing threads per process (default: the cores, divided among the ranks).
    comm
        An mpi4py communicator to split the work over its ranks (every rank
        calls this function with the same arguments); ``None``: this process only.
    progress
        Called on the writing process (rank 0) as ``progress(done, total)`` in
        chunks after each chunk is written (``total`` = the blocks present in
        the planes); not called when there is none.

    Returns
    -------
    Hdf5ExportResult
        The same on every rank.
    """
    filters = Hdf5Filters(compression, compression_opts, shuffle)
    if comm is not None and comm.Get_size() > 1:
        from .hdf5_mpi import export_hdf5_mpi

        return export_hdf5_mpi(comm, src, dest, name, filters, z0, z1, n_threads, progress)
    start = time.perf_counter()
    job = ExportJob.prepare(src, filters, z0, z1)
    writer = ChunkWriter(dest, name, job, filters)
    try:
        writer.clear_stale_chunks()
        for done, item in enumerate(bounded_map(job.encode_at, job.blocks, n_threads or os.cpu_count() or 1), 1):
            writer.write(*item)
            if progress is not None:
                progress(done, len(job.blocks))
        writer.finish()
    finally:
        writer.close()
    result = Hdf5ExportResult(
        os.fspath(dest), name, job.z0, job.z1, writer.chunks_written, writer.raw_bytes, writer.stored_bytes,
        time.perf_counter() - start,
    )
    logger.info("%s: wrote %d chunks of %r, planes [%d, %d)", result.dest, result.chunks_written, name, job.z0, job.z1)
    return result
