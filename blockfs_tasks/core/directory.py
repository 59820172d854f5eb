"""``Directory``: the live API of a blockfs volume (create, write, close, open, read).

Writing needs no writer processes and no locks. Every process that calls
:meth:`Directory.write_block` compresses the block itself (so compression runs
on every core the caller uses), appends it to a block file that only this
process writes, and commits it with one entry in that file's own journal
before the call returns. A block is therefore safe once ``write_block`` has
returned, even if the process is then terminated (as ``multiprocessing.Pool``
does on leaving its ``with`` block). :meth:`Directory.close`, in the process
that created the volume, merges the journals into the directory file
atomically. One writing session at a time (:mod:`.session`): a second
``create()`` or ``open(path, "r+")`` is refused while the first is open.

Example (coordinates are voxel offsets x, y, z; blocks are (z, y, x) arrays)::

    d = Directory(1024, 1024, 1024, np.uint16, "volume.blockfs")
    d.create()
    d.write_block(np.zeros((64, 64, 64), np.uint16), 128, 64, 0)
    d.close()
    Directory.open("volume.blockfs").read_block(128, 64, 0)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import format as fmt
from . import session as sessions
from .async_writer import AsyncBlockWriter, write_through
from .atomic import fsync_folder, fsync_path, sweep_temporaries, write_atomically
from .blockfile import BlockFileReader, process_appenders
from .bytesource import ByteSource, LocalSource, is_remote, join_url, local_path, open_source
from .codec import Compression, make_codec
from .encode import as_storable, check_block, encode_block
from .errors import (
    BlockShapeError,
    ConfigurationError,
    ReadOnlyError,
    VolumeHasVersionsError,
    VolumeInUseError,
    WriteFailedError,
    WriterDiedError,
)
from .grid import XYZ, ZYX, BlockGrid
from .journal import JournalReplay, journal_files, read_journal, remove_journals, torn_block_files
from .merge import IndexMerger
from .naming import resolve_block_path, version_files, volume_files
from .paged_index import PagedIndex
from .region import AxisRange, normalize_key, read_region
from .remote_region import region_frames

logger = logging.getLogger(__name__)

# as_storable (now in .encode), resolve_block_path and volume_files (now in .naming) stay importable from here.
__all__ = ["Directory", "as_storable", "resolve_block_path", "volume_files"]

_MODES = ("r", "r+")
#: Threads reading the blocks of a region of a remote volume: ranged GETs in flight at once.
REMOTE_READ_THREADS = 32


class Directory:
    """A blockfs volume: a directory file and the block files beside it.

    Parameters
    ----------
    x_extent, y_extent, z_extent
        Volume size in voxels (XYZ order).
    dtype
        Voxel type: (u)int8/16/32/64 or float32/64.
    directory_filename
        Path of the directory file; block files are created beside it.
    x_block_size, y_block_size, z_block_size
        Block size in voxels (XYZ order).
    compression
        Blosc compressor: a name ("zstd", "lz4", "lz4hc", "blosclz", "zlib",
        "snappy") or a :class:`Compression`; or a float codec ("fpzip",
        "pcodec", "kempressed"; see :mod:`.codecs`).
    compression_level
        Blosc level, 0-9 (default 5), or the float codec's (pcodec 0-12,
        default 8; fpzip and kempressed have none).
    metadata
        The application's own JSON-serializable dictionary, kept in the directory.
    shuffle
        Blosc shuffle: 1 or True byte (the default; it helps integer images a
        lot), 2 bit, 0 or False none.
    bitround_keepbits
        Opt-in lossy rounding of float data to that many mantissa bits before
        the codec (relative error <= 2**-(keepbits + 1), kept in the codec record).
    """

    def __init__(
        self,
        x_extent: int,
        y_extent: int,
        z_extent: int,
        dtype: Any,
        directory_filename: str | os.PathLike[str],
        x_block_size: int = 64,
        y_block_size: int = 64,
        z_block_size: int = 64,
        compression: str | Compression = "zstd",
        compression_level: int | None = None,
        metadata: dict[str, Any] | None = None,
        shuffle: bool | int = True,
        bitround_keepbits: int | None = None,
    ) -> None:
        grid = BlockGrid((x_extent, y_extent, z_extent), (x_block_size, y_block_size, z_block_size))
        codec = make_codec(compression, compression_level, shuffle, bitround_keepbits)
        self._init(fmt.VolumeSpec(grid, dtype, codec, dict(metadata or {})), directory_filename)

    def _init(
        self, spec: fmt.VolumeSpec, path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
    ) -> None:
        self.spec = spec
        remote = is_remote(path)
        self.directory_filename = os.fspath(path) if remote else os.path.abspath(local_path(path))
        self._storage_options = dict(storage_options or {})
        self._source: ByteSource | None = open_source(os.fspath(path), self._storage_options) if remote else None
        self.version = fmt.VERSION
        self._mode = "new"
        self._owner_pid = os.getpid()
        self._index: np.ndarray | PagedIndex | None = None
        self._block_names: list[str] = []
        self._reader: BlockFileReader | None = None
        self._replay = JournalReplay(self.directory_filename, spec)  # what the journals added since last look
        self._session: sessions.Session | None = None  # held by the Directory that began the session
        self._failure: WriteFailedError | None = None  # a failed fsync: close() never succeeds after it
        self._journal_header: bytes | None = None
        self._committed_names: list[str] = []  # block files named in the directory file on disk
        self._lock = threading.RLock()  # one journal replay at a time (region reads use threads)
        self._pool: ThreadPoolExecutor | None = None
        self._writer: AsyncBlockWriter | None = None  # start_writer_processes(): this process's compressors
        self._writer_depth = 0  # its queue depth; 0 = write_block compresses in the caller
        self._writer_pid = 0  # the process that called start_writer_processes()

    # ----------------------------------------------------------- properties
    @property
    def grid(self) -> BlockGrid:
        """The volume's block grid."""
        return self.spec.grid

    @property
    def shape(self) -> ZYX:
        """Volume shape in (z, y, x) order."""
        return self.spec.grid.shape

    @property
    def dtype(self) -> np.dtype:
        """Voxel dtype."""
        return self.spec.dtype

    # A read-only array to numpy, dask and napari: these and ``d[z0:z1, y0:y1, x0:x1]``.
    @property
    def ndim(self) -> int:
        """Number of axes: 3 (z, y, x)."""
        return 3

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole volume decoded (not its size on disk)."""
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> ZYX:
        """Block shape in (z, y, x) order; ``dask.array.from_array`` aligns its chunks on it."""
        x, y, z = self.grid.block_xyz
        return (z, y, x)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole volume as a (z, y, x) numpy array (``np.asarray(d)``): every block is read.

        Reading a part is ``d[z0:z1, y0:y1, x0:x1]``; a lazy array of the
        volume is ``dask.array.from_array(d)``.
        """
        if copy is False:
            raise ValueError(f"{self.directory_filename}: a volume's voxels are compressed on disk; "
                             f"they cannot be viewed without a copy")
        out = self[:, :, :]
        return out if dtype is None else out.astype(dtype, copy=False)

    def to_dask(self, name: str | None = None) -> Any:
        """A lazy ``dask.array.Array`` (z, y, x) of the volume whose chunks are its blocks (needs dask)."""
        from .dask_array import dask_array

        return dask_array(self, name)

    @property
    def metadata(self) -> dict[str, Any]:
        """The application's own metadata."""
        return self.spec.metadata

    x_extent = property(lambda self: self.spec.grid.extent_xyz[0], doc="Extent in x.")
    y_extent = property(lambda self: self.spec.grid.extent_xyz[1], doc="Extent in y.")
    z_extent = property(lambda self: self.spec.grid.extent_xyz[2], doc="Extent in z.")
    x_block_size = property(lambda self: self.spec.grid.block_xyz[0], doc="Block size in x.")
    y_block_size = property(lambda self: self.spec.grid.block_xyz[1], doc="Block size in y.")
    z_block_size = property(lambda self: self.spec.grid.block_xyz[2], doc="Block size in z.")
    compression = property(lambda self: self.spec.codec.compression, doc="Compression name (Blosc or float codec).")
    compression_level = property(lambda self: self.spec.codec.level, doc="Compression level.")

    @property
    def block_filenames(self) -> list[str]:
        """Paths of the block files the directory refers to."""
        self._load()
        if self._source is not None:
            return [join_url(self.directory_filename, n) for n in self._block_names]
        return [resolve_block_path(self.directory_filename, n) for n in self._block_names]

    @property
    def remote(self) -> bool:
        """True for a volume read through fsspec (``s3://``, ``gs://``, ``http(s)://``): read-only."""
        return self._source is not None

    @property
    def byte_source(self) -> ByteSource | None:
        """The remote byte source the volume is read through, or None for local files (``pread``)."""
        return self._source

    @property
    def index(self) -> np.ndarray:
        """The index: one entry (offset, size, file, crc32c) per block position; file 0 = absent."""
        self._load()
        return self._index  # type: ignore[return-value]  # _load() set it; a PagedIndex indexes like the array

    @property
    def writable(self) -> bool:
        """True while blocks may be written."""
        return self._mode == "w"

    def get_block_size(self, x: int, y: int, z: int) -> ZYX:
        """Shape (z, y, x) of the block starting at voxel (x, y, z)."""
        self.grid.check_origin(x, y, z)
        return self.grid.block_shape_at(x, y, z)

    def __repr__(self) -> str:
        return (
            f"Directory({self.directory_filename!r}, shape(z,y,x)={self.shape}, "
            f"dtype={self.dtype.name}, block(x,y,z)={self.grid.block_xyz}, mode={self._mode!r})"
        )

    # -------------------------------------------------------- create / open
    def create(self) -> None:
        """Create an empty volume, replacing any volume at the same path.

        Starts a writing session; raises :class:`VolumeInUseError` if another
        one (of a live process) holds the volume, :class:`VolumeHasVersionsError`
        if the volume has commits (they share its block files). In a child that ``spawn`` or
        ``forkserver`` is starting, the main script's top level runs again; a
        ``create()`` there joins the parent's volume instead of wiping the
        blocks the parent's workers are writing.
        """
        if self._source is not None:
            raise ReadOnlyError(
                f"{self.directory_filename}: remote volumes are read-only; write the volume locally and copy it "
                f"with blockfs-cp, or write it with the Luigi pipeline's --dest"
            )
        if _in_spawned_child_bootstrap():
            self._mode, self._owner_pid = "w", os.getppid()
            logger.debug("%s: spawned child joins the parent's volume", self.directory_filename)
            return
        path = self.directory_filename
        refuse_if_versioned(path, "create() would delete the block files they share")
        if self._session is not None:  # create() again: end this object's earlier session first
            process_appenders.release(path)
            self._session.release()
            self._session = None
        session = sessions.acquire(path, replace_own=True)
        try:
            sweep_temporaries(path)
            for old in volume_files(path):
                os.unlink(old)
            empty = np.zeros(self.grid.n_blocks, fmt.INDEX_DTYPE)
            write_atomically(path, [fmt.encode_directory_header(self.spec, [], empty), empty.data])
        except BaseException:
            session.release()
            raise
        self._session, self._failure = session, None
        self._replay = JournalReplay(path, self.spec)
        self._index, self._block_names, self._committed_names = empty, [], []
        self._mode, self._owner_pid = "w", os.getpid()
        logger.debug("created %r", self)

    @classmethod
    def open(
        cls, directory_filename: str | os.PathLike[str], mode: str = "r", storage_options: dict[str, Any] | None = None
    ) -> Directory:
        """Open an existing volume, read-only (``"r"``) or to add blocks (``"r+"``).

        ``directory_filename`` may be a URL (``s3://bucket/vol.blockfs``,
        ``gs://...``, ``https://...``) read through fsspec with
        ``storage_options`` as they are (``{"endpoint_url": ...}``,
        ``{"anon": True}``...); a remote volume opens read-only, reads its
        published directory (never a writer's journals), fetches index pages
        as blocks are looked up and each block with one ranged GET.

        ``"vol.blockfs@REF"`` opens a version (a tag, a branch or a unique
        commit-id prefix, see :mod:`.versions`) read-only, at the cost of
        opening the working volume.

        Journals left by a writing session that never closed (a crash) are
        replayed, so every block it committed reads back; ``"r+"`` then takes
        over that session, and its ``close()`` commits those blocks too.
        ``"r+"`` starts a writing session: it raises :class:`VolumeInUseError`
        while another one is open, except in a process that the session's
        own process started (a pool worker), which joins that session.
        """
        if mode not in _MODES:
            raise ConfigurationError(f"Invalid mode {mode!r}; expected one of {_MODES}")
        self = cls.__new__(cls)
        if is_remote(directory_filename):
            return cls._open_remote(os.fspath(directory_filename), mode, storage_options)
        if storage_options:
            raise ConfigurationError(f"{directory_filename}: storage_options are for URLs (s3://, gs://, https://)")
        path = os.path.abspath(local_path(directory_filename))
        if "@" in os.path.basename(path) and not os.path.exists(path):  # "vol.blockfs@REF": a version
            from .versions import version_path

            volume, ref = path.rsplit("@", 1)
            if mode != "r":
                raise ReadOnlyError(f"{path}: a version of a volume is read-only; open it with mode 'r'")
            path = version_path(volume, ref)
        if mode == "r":
            contents = fmt.read_directory(path)
            self._init(contents.spec, path)
            self._apply_contents(contents)
            self._mode = "r"
            self._replay_journal()
            return self
        holder = sessions.read_session(path)
        if holder is not None and (holder.is_ancestor() or _in_spawned_child_bootstrap()):
            contents = fmt.read_directory(path)  # a worker of the open session joins it
            self._init(contents.spec, path)
            self._apply_contents(contents)
            self._mode, self._owner_pid = "w", holder.pid
            self._replay_journal()
            return self
        fmt.read_directory(path)  # not a volume, or damaged: say so before taking the session
        session = sessions.acquire(path)
        try:
            contents = fmt.read_directory(path)  # the directory as the previous session left it
            if contents.version == fmt.VERSION_1:  # 2.0.0 takes blocks; close() publishes it as 2.1.0
                raise ReadOnlyError(
                    f"{path}: format {contents.version} volumes are read-only; "
                    f"copy the data into a new volume to add blocks"
                )
            sweep_temporaries(path)
        except BaseException:
            session.release()
            raise
        self._init(contents.spec, path)
        self._apply_contents(contents)
        self._session, self._mode = session, "w"
        self._replay_journal()
        return self

    @classmethod
    def _open_remote(cls, url: str, mode: str, storage_options: dict[str, Any] | None) -> Directory:
        if mode != "r":
            raise ReadOnlyError(f"{url}: remote volumes open read-only (mode 'r'), not {mode!r}")
        self = cls.__new__(cls)
        source = open_source(url, storage_options)
        contents = fmt.read_directory(url, source=source)
        self._init(contents.spec, url, storage_options)
        self._source = source
        self._apply_contents(contents)
        self._mode = "r"
        return self

    def _apply_contents(self, contents: fmt.DirectoryContents) -> None:
        self.version = contents.version
        self._index = contents.index
        self._block_names = contents.block_files
        self._committed_names = list(contents.block_files)
        self._reader = BlockFileReader(self.block_filenames, contents.has_checksums, self._source)

    def _load(self) -> None:
        """Load the directory (after unpickling, a Directory carries only its spec)."""
        with self._lock:
            if self._index is None:
                self._apply_contents(fmt.read_directory(self.directory_filename, source=self._source))
                self._replay_journal()
            elif self._mode == "w":
                self._replay_journal()

    def _replay_journal(self) -> None:
        """Merge journal entries committed since the last look into the in-memory index.

        Each writer process has its own journal; only the entries a journal
        gained since it was last merged are applied, so the index follows the
        order in which this process saw the commits.
        """
        if self._source is not None:  # a remote reader reads the published directory only
            return
        with self._lock:
            for journal, entries in self._replay.new_entries():
                self._merge(entries, journal)

    def _merge(self, entries: np.ndarray, where: str) -> None:
        """Apply entries (commit order) to a copy of the index (readers may hold the old one)."""
        merger = IndexMerger(self.directory_filename, np.array(self._index, copy=True), list(self._block_names))
        if merger.apply(entries, where) == 0:
            return
        self._index, self._block_names = merger.index, merger.block_names
        if self._reader is None:
            self._reader = BlockFileReader(self.block_filenames, True, self._source)
        else:  # names are only appended: open descriptors stay valid for threads reading now
            self._reader.paths = self.block_filenames

    # ---------------------------------------------------------------- write
    def start_writer_processes(self, queue_depth: int = 10) -> None:
        """Give this process's ``write_block`` calls compression workers on every core.

        After this call, ``write_block`` *in the calling process* checks the
        block, queues a copy and returns; ``cores - 1`` worker threads
        compress and commit it, so a single producer loop uses every core.
        Such blocks are committed when :meth:`flush` or :meth:`close` returns
        (as with the original blockfs's writer processes). At most
        ``min(queue_depth, 4 x workers)`` blocks wait at a time; when none
        more may, the calling thread compresses and commits the block itself
        (committed on return; see :mod:`.async_writer`). Other processes (pool workers,
        forked or spawned, even when they run this call themselves) are
        unaffected: their ``write_block`` compresses in the caller and commits
        before it returns. The threads start with the first queued block, so
        a pool forked before that inherits none.
        """
        self._check_writable()
        if os.getpid() != self._owner_pid:
            # A worker of the session (a spawned child re-running the script's top level, a process
            # that joined with open("r+")): the pool may end it at any time, so it commits each block
            # before write_block returns.
            return
        self._writer_depth = max(1, queue_depth)
        self._writer_pid = os.getpid()

    def _queued_writer(self) -> AsyncBlockWriter | None:
        """This process's compression workers if :meth:`start_writer_processes` was called here."""
        if not self._writer_depth or self._writer_pid != os.getpid():
            return None
        if self._writer is None or self._writer.pid != os.getpid():
            workers = max(1, len(os.sched_getaffinity(0)) - 1)  # the producer compresses too (caller runs)
            self._writer = AsyncBlockWriter(self._commit_block, workers, min(self._writer_depth, 4 * workers))
        return self._writer

    def _started_writer(self) -> AsyncBlockWriter | None:
        """This process's compression workers if they were started (a forked child inherits none)."""
        writer = self._writer
        return writer if writer is not None and writer.pid == os.getpid() else None

    def flush(self) -> None:
        """Wait until every block queued by ``write_block`` (see :meth:`start_writer_processes`) is committed.

        Raises the first error of a compression worker (and again on every
        later call: a writer that failed takes no more blocks).
        """
        writer = self._started_writer()
        if writer is not None:
            writer.flush()

    def _check_writable(self) -> None:
        if self._mode != "w":
            state = "closed" if self._mode == "closed" else "read-only" if self._mode == "r" else "not created"
            raise ReadOnlyError(f"{self.directory_filename}: the volume is {state}; cannot write blocks")

    def write_block(self, block: np.ndarray, x: int, y: int, z: int) -> None:
        """Write the block whose first voxel is (x, y, z); it is committed on return.

        ``block`` is a (z, y, x) array of the block's shape (truncated at the
        volume's edges, see :meth:`get_block_size`). After
        :meth:`start_writer_processes` in this process, the block is checked
        here and committed by a worker: on :meth:`flush` or :meth:`close`.
        """
        self._check_writable()
        writer = self._queued_writer()
        if writer is None:
            self._write_now(block, x, y, z)
            return
        where = f"{self.directory_filename}: block at (x, y, z) = ({x}, {y}, {z})"
        position, stored = check_block(self.spec, block, x, y, z, where)
        writer.submit(position, stored, where, owned=not np.may_share_memory(stored, block))

    def _write_now(self, block: np.ndarray, x: int, y: int, z: int) -> None:
        """Compress and commit one block in the calling thread."""
        where = f"{self.directory_filename}: block at (x, y, z) = ({x}, {y}, {z})"
        position, data = encode_block(self.spec, block, x, y, z, where)
        self._append(position, data)

    def _commit_block(self, position: int, block: np.ndarray, where: str) -> None:
        """A compression worker's job: encode a checked block and commit it."""
        self._append(position, self.spec.codec.encode(block))

    def _append(self, position: int, data: bytes) -> None:
        session = sessions.session_identity(self.directory_filename)
        header = self._journal_header or fmt.encode_fragment_header(self.spec)
        self._journal_header = header
        process_appenders.get(self.directory_filename, session, header).append(position, data)

    def write_blocks(
        self, blocks: Iterable[tuple[np.ndarray, int, int, int]], n_threads: int | None = None
    ) -> int:
        """Write ``(block, x, y, z)`` items with ``n_threads`` compressing threads; return the count.

        Blosc releases the GIL, so threads compress in parallel: ``n_threads -
        1`` workers and the calling thread, which also checks each block (see
        :mod:`.async_writer`); at most ``4 x (n_threads - 1)`` blocks are
        queued, so memory stays bounded. Every block is committed on return.
        """
        self._check_writable()
        threads = n_threads or os.cpu_count() or 1
        if threads > 1:  # the calling thread compresses too (caller runs, see .async_writer)
            return write_through(self._commit_block, self._checked(blocks), threads)
        n = 0
        for block, x, y, z in blocks:
            self._write_now(block, x, y, z)
            n += 1
        return n

    def _checked(
        self, blocks: Iterable[tuple[np.ndarray, int, int, int]]
    ) -> Iterator[tuple[int, np.ndarray, str, bool]]:
        """``(position, block ready to encode, where, owned)`` of each ``(block, x, y, z)``, checked."""
        for block, x, y, z in blocks:
            where = f"{self.directory_filename}: block at (x, y, z) = ({x}, {y}, {z})"
            position, stored = check_block(self.spec, block, x, y, z, where)
            yield position, stored, where, not np.may_share_memory(stored, block)

    def close(self) -> None:
        """Commit every block written so far into the directory file, and end the session.

        In the process that created (or opened ``"r+"``) the volume this merges
        every journal into a new directory file, published atomically after
        the block files are fsynced; in any other process it only flushes and
        closes that process's own block file. Raises :class:`WriterDiedError`
        (after committing every intact block) when a writer stopped in the
        middle of a block. A failed fsync raises :class:`WriteFailedError`,
        leaves the volume as it was last published, and is raised again by
        every later ``close()``: it never turns into success.
        """
        if self._failure is not None:
            raise WriteFailedError(
                self._failure.errno, f"an earlier close() failed, nothing was committed: {self._failure.strerror}",
                self._failure.filename,
            ) from self._failure
        writer, self._writer = self._started_writer(), None
        if writer is not None:
            writer.close()  # every queued block committed (or its error raised) before anything is published
        owner = self._mode == "w" and os.getpid() == self._owner_pid
        try:
            process_appenders.release(self.directory_filename)
        except WriteFailedError as e:
            if owner:
                self._failure = e
            raise
        if not owner:
            self._release()
            return
        if self._session is not None and not self._session.still_held():
            self._mode = "closed"
            self._release()
            raise VolumeInUseError(
                f"{self.directory_filename}: this writing session was taken over (by a create() of the "
                f"same volume?); nothing was committed by this close()"
            )
        if self._index is None:  # an unpickled copy in the owning process
            self._load()
        old_names = set(self._committed_names)
        entries = []
        journals = journal_files(self.directory_filename)
        for journal in journals:  # read each once: merged, and checked for torn block files
            fragment = read_journal(journal, self.spec)
            if fragment is not None:
                entries.append(fragment.entries)
        all_entries = np.concatenate(entries) if entries else None
        if all_entries is not None:
            with self._lock:
                self._merge(all_entries, f"{self.directory_filename}: journals")
        for name in [n for n in self._block_names if n not in old_names]:
            block_file = resolve_block_path(self.directory_filename, name)
            try:
                fsync_path(block_file)
            except OSError as e:
                self._failure = WriteFailedError(
                    e.errno, f"fsync failed ({e.strerror}): its blocks may not be on disk, so the volume "
                    f"stays as it was last published", block_file,
                )
                raise self._failure from e
        index = np.ascontiguousarray(self._index)
        write_atomically(
            self.directory_filename,
            [fmt.encode_directory_header(self.spec, self._block_names, index), index.data],
        )
        self.version = fmt.VERSION
        torn = torn_block_files(self.directory_filename, old_names, all_entries)
        remove_journals(self.directory_filename, journals)
        sweep_temporaries(self.directory_filename)
        self._end_session()
        self._mode = "closed"
        self._release()
        if torn:
            raise WriterDiedError(
                "a writer stopped in the middle of a block; these blocks were not committed "
                "(every committed block is intact): " + "; ".join(torn)
            )

    def _end_session(self) -> None:
        """Remove the session file: this object's session, or (an unpickled copy) this process's."""
        if self._session is not None:
            self._session.release()
            self._session = None
            return
        holder = sessions.read_session(self.directory_filename)
        if holder is not None and holder.on_this_machine() and holder.pid == os.getpid():
            os.unlink(sessions.session_file_name(self.directory_filename))
            fsync_folder(self.directory_filename)

    def _release(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._index is not None:
            self._reader = BlockFileReader(self.block_filenames, self.version != fmt.VERSION_1, self._source)

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mode == "w" and exc[0] is None:
            self.close()
        else:
            writer, self._writer = self._started_writer(), None
            if writer is not None:  # the queued blocks still commit; the error in flight is the one raised
                with contextlib.suppress(Exception):
                    writer.close()
            self._release()
            if self._reader is not None:
                self._reader.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the spec, path and mode: another process reopens the files."""
        return {
            "spec": self.spec,
            "path": self.directory_filename,
            "mode": self._mode,
            "owner": self._owner_pid,
            "version": self.version,
            "storage_options": self._storage_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init(state["spec"], state["path"], state.get("storage_options"))
        self._mode, self._owner_pid, self.version = state["mode"], state["owner"], state["version"]

    # ----------------------------------------------------------------- read
    def _entry(self, x: int, y: int, z: int, refresh: bool = True) -> np.void:
        """The index entry of a block; in a writing session, after merging new journal entries if ``refresh``."""
        if self._index is None:
            self._load()
        elif self._mode == "w" and refresh:
            self._replay_journal()
        entry: np.void = self._index[self.grid.position(x, y, z)]  # type: ignore[index]  # loaded above
        return entry

    def _read_pool(self) -> ThreadPoolExecutor:
        """The threads that read and decode the blocks of region reads, made on first use.

        More threads than cores: while some wait on a cold ``pread``, others
        decode; remotely, enough that many ranged GETs are in flight at once.
        """
        with self._lock:
            if self._pool is None:
                threads = 4 * (os.cpu_count() or 1)
                if self._source is not None:
                    threads = max(threads, REMOTE_READ_THREADS)
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blockfs-read")
            return self._pool

    def read_block(self, x: int, y: int, z: int, out: np.ndarray | None = None) -> np.ndarray:
        """The (z, y, x) block whose first voxel is (x, y, z); zeros if never written.

        ``out``, a C-contiguous array of the block's shape and the volume's
        dtype, receives the block instead of a new array (reuse it in loops).
        """
        return self._read_block(self._entry(x, y, z), x, y, z, out)

    def _read_block(self, entry: np.void, x: int, y: int, z: int, out: np.ndarray | None) -> np.ndarray:
        shape = self.grid.block_shape_at(x, y, z)
        if out is not None and (out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous):
            raise BlockShapeError(
                f"{self.directory_filename}: out= must be a C-contiguous {self.dtype.name} array of "
                f"shape {shape}, got {out.dtype} {out.shape}"
            )
        if entry["file"] == 0:
            if out is None:
                return np.zeros(shape, self.dtype)
            out.fill(0)
            return out
        if self._reader is None:
            self._reader = BlockFileReader(self.block_filenames, self.version != fmt.VERSION_1, self._source)
        where = f"block at (x, y, z) = ({x}, {y}, {z})"
        return self._reader.read(entry, self.dtype, shape, where, out, self.spec.codec)

    def read_frame(self, x: int, y: int, z: int) -> bytes | None:
        """The stored frame of the block at (x, y, z), checked against its CRC-32C; None if never written.

        For passing frames on undecoded (an fpzip volume exported as fpzip).
        """
        entry = self._entry(x, y, z)
        if entry["file"] == 0:
            return None
        if self._reader is None:
            self._reader = BlockFileReader(self.block_filenames, self.version != fmt.VERSION_1, self._source)
        data = self._reader.read_frames([entry])[0]
        self._reader.check(data, entry, f"block at (x, y, z) = ({x}, {y}, {z})")
        return data

    def has_block(self, x: int, y: int, z: int) -> bool:
        """True if the block at (x, y, z) was written."""
        return bool(self._entry(x, y, z)["file"])

    def block_origins(self) -> Iterator[XYZ]:
        """Origins (x, y, z) of the blocks present, in position order."""
        self._load()
        for position in np.flatnonzero(self._index["file"]):  # type: ignore[index]  # _load() above set it
            yield self.grid.origin(int(position))

    def __iter__(self) -> Iterator[XYZ]:
        """Same as :meth:`block_origins` (``for x, y, z in d``), kept for scripts that use it."""
        return self.block_origins()

    def __bool__(self) -> bool:
        """Always True, like a file object: an empty volume is still a volume (``if d:`` never counts blocks)."""
        return True

    def __len__(self) -> int:
        """Number of blocks present (kept for scripts that use it; ``d.shape[0]`` is the number of planes)."""
        self._load()
        return int(np.count_nonzero(self._index["file"]))  # type: ignore[index]  # _load() above set it

    def __getitem__(self, key: Any) -> np.ndarray:
        """Read any (z, y, x) region with numpy slicing, touching only the blocks it needs."""
        slices, squeeze = normalize_key(key, self.shape)
        self._load()  # in a writing session: merge new journal entries once, not per block
        return read_region(
            slices,
            squeeze,
            self.grid,
            self.dtype,
            lambda origin: self._entry(*origin, refresh=False),
            self._region_reader(slices),
            self._read_pool,
            self._range_reader,
            self.spec.codec,
        )

    def _region_reader(self, slices: list[AxisRange]) -> Callable[[np.void, XYZ, np.ndarray], np.ndarray]:
        """How a region read gets each block: one read each locally; remotely, the region's frames fetched at once."""
        if self._source is None or self._reader is None:
            return lambda entry, origin, out: self._read_block(entry, *origin, out)
        reader = self._reader
        frames = region_frames(slices, self.grid, lambda origin: self._entry(*origin, refresh=False), reader)

        def decode(entry: np.void, origin: XYZ, out: np.ndarray) -> np.ndarray:
            where = f"block at (x, y, z) = {origin}"
            shape = self.grid.block_shape_at(*origin)
            return reader.decode(frames.pop(origin), entry, self.dtype, shape, where, out, self.spec.codec)

        return decode

    # ------------------------------------------------------------- versions
    def commit(self, message: str, author: str | None = None) -> str:
        """Commit the volume as published onto its checked-out branch; return the commit id.

        Refused while a writing session is open (this one included): a
        session's blocks are a consistent state only after ``close()``.
        """
        from .versions import commit_working

        self._check_not_writing("commit")
        return commit_working(self.directory_filename, message, author)

    def delete(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> int:
        """Clear a block-aligned (x, y, z) voxel box of the published volume: its blocks read as zeros.

        Returns the number of blocks that were present; their space comes back
        at the next compaction (once no commit points at them). Refused while
        a writing session is open.
        """
        from .versions import delete_region

        self._check_not_writing("delete blocks")
        count = delete_region(self.directory_filename, x0, x1, y0, y1, z0, z1)
        self._index = None  # reload the new directory on the next read
        return count

    def _check_not_writing(self, what: str) -> None:
        if self._mode == "w":
            raise VolumeInUseError(
                f"{self.directory_filename}: cannot {what} while this writing session is open; close() it first"
            )

    def _range_reader(self) -> _RunReader | None:
        """The local block files, for region reads planned in file-offset order (None: a remote volume)."""
        if self._reader is None:
            self._reader = BlockFileReader(self.block_filenames, self.version != fmt.VERSION_1, self._source)
        return _RunReader(self._reader) if isinstance(self._reader.source, LocalSource) else None


class _RunReader:
    """A local :class:`BlockFileReader` seen as :mod:`.region` plans reads: descriptors and byte ranges."""

    def __init__(self, reader: BlockFileReader) -> None:
        self.reader = reader
        self.fd = reader.fd
        self.decode = reader.decode

    def read_range(self, i: int, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)`` of block file ``i`` (fewer at its end: decode names the block)."""
        return os.pread(self.reader.fd(i), size, offset)


def refuse_if_versioned(directory_path: str, why: str) -> None:
    """Raise :class:`VolumeHasVersionsError` if the volume has commits, refs or a HEAD."""
    found = version_files(directory_path)
    if found:
        names = ", ".join(os.path.basename(f) for f in found[:3]) + (", ..." if len(found) > 3 else "")
        raise VolumeHasVersionsError(
            f"{directory_path} has versions ({names}): {why}. Write the new volume at another path, "
            f"or delete the volume's versions first (its .commit-* files, .refs folder and .HEAD)"
        )


def _in_spawned_child_bootstrap() -> bool:
    """True while a spawned child re-imports the main script (multiprocessing's own test).

    ``multiprocessing.parent_process()`` is still None at that moment (it is set
    only when the child's bootstrap starts), so it must not be part of the test.
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))

