"""Export a blockfs volume (or a range of its planes) into ONE HDF5 dataset, in this process.

This module is the serial driver, :func:`export_hdf5`, and the public face of
the HDF5 export; its parts are modules of their own:

* :mod:`.hdf5_chunks` - the filter pipeline (``gzip`` with a level from
  ``compression_opts``, default 4 like h5py; ``lzf``; ``none``; optional byte
  ``shuffle``) and the encoder that turns a block into the bytes HDF5 stores;
* :mod:`.hdf5_record` - the resume record in the dataset's attributes
  (:func:`completed_planes`, :func:`planes_complete`);
* :mod:`.hdf5_writer` - the job (which planes, which blocks) and the one
  writer of the file (dataset layout, reuse of an existing dataset);
* :mod:`.hdf5_mpi` - the MPI driver, :func:`~.hdf5_mpi.export_hdf5_mpi`;
* :mod:`.rollback` - the journal that makes a killed writer harmless.

How the work is split
---------------------
The planes ``[z0, z1)`` must start and end on block rows. Only the blocks
present in them are exported (absent ones are left to the fill value). The
caller chooses how many processes: :func:`export_hdf5` runs in this process,
where ``n_threads`` threads read, pad and compress the blocks in block position
order while the calling thread writes them with ``H5Dwrite_chunk``: one file
writer, many compressors, no parallel HDF5 needed. Under ``mpiexec -n N``,
:func:`~.hdf5_mpi.export_hdf5_mpi` (same arguments, plus the communicator)
has every rank read, pad and compress, and rank 0 write; its module docstring
gives the protocol. Neither imports mpi4py: only
:func:`~.hdf5_mpi.world_comm` does, which the ``blockfs2hdf`` console script
calls when it runs under ``mpiexec``.

Resume
------
An export of ``[z0, z1)`` first removes that range from the record in the
dataset's attributes (and clears the record if it came from another source),
writes its chunks, then adds the range back and flushes the file. For a Luigi
layer (:mod:`blockfs_tasks.tasks.export`):
:func:`~blockfs_tasks.export.planes.plane_slabs` plans the ranges (one task
each), a task's ``complete()`` is :func:`planes_complete`, and its ``run()``
launches ``mpiexec -n N blockfs2hdf ... --z0 Z0 --z1 Z1`` as a subprocess (MPI
must not start inside a Luigi worker). A serial HDF5 file has one writer at a
time, so slab tasks writing the same file must not run at the same time (a
Luigi resource with a limit of 1 per file; a second writer gets
:class:`~blockfs_tasks.core.errors.DestinationError`).

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

from ..core.parallel import bounded_map
from .hdf5_chunks import COMPRESSIONS, ChunkEncoder, Hdf5Filters
from .hdf5_record import DONE_ATTR, SOURCE_ATTR, completed_planes, planes_complete
from .hdf5_writer import (
    ChunkWriter,
    ExportJob,
    Hdf5ExportResult,
    check_plane_range,
    present_blocks,
)
from .planes import Progress, VolumeLike, default_threads

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
    "planes_complete",
    "present_blocks",
]


def export_hdf5(
    src: VolumeLike,
    dest: str | os.PathLike[str],
    name: str,
    *,
    compression: str | None = "gzip",
    compression_opts: int | None = None,
    shuffle: bool = False,
    z0: int = 0,
    z1: int | None = None,
    n_threads: int | None = None,
    progress: Progress | None = None,
) -> Hdf5ExportResult:
    """Export planes ``[z0, z1)`` of a blockfs volume into dataset ``name`` of ``dest``, in this process.

    Parameters
    ----------
    src
        The volume: a :class:`~blockfs_tasks.core.Directory` or the path of its directory file.
    dest
        HDF5 file; created if missing, other objects in it are kept.
    name
        Dataset path inside the file (intermediate groups are created).
    compression, compression_opts, shuffle
        "gzip" (with a 0-9 level, default 4), "lzf" or "none"; byte shuffle first.
    z0, z1
        Planes to export, on block rows; default the whole volume. Exporting
        the ranges of :func:`~blockfs_tasks.export.planes.plane_slabs` one by
        one gives the same dataset as one whole export, and each completed
        range is recorded in the dataset.
    n_threads
        Compressing threads (default: one per core).
    progress
        Called as ``progress(done, total)`` in chunks after each chunk is
        written (``total`` = the blocks present in the planes); not called when
        there is none.

    To split the work over the ranks of ``mpiexec``, call
    :func:`~blockfs_tasks.export.hdf5_mpi.export_hdf5_mpi` instead, on every rank.
    """
    filters = Hdf5Filters(compression, compression_opts, shuffle)
    start = time.perf_counter()
    job = ExportJob.prepare(src, filters, z0, z1)
    threads = default_threads(n_threads)
    writer = ChunkWriter(dest, name, job, filters)
    try:
        writer.clear_stale_chunks()
        for done, item in enumerate(bounded_map(job.encode_at, job.blocks, threads), 1):
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
