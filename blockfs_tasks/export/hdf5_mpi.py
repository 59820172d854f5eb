"""The MPI driver of the HDF5 export: many ranks compress, rank 0 writes.

Every rank calls :func:`export_hdf5_mpi` with the same arguments (through
:func:`blockfs_tasks.export.hdf5.export_hdf5` with ``comm=``). The protocol,
with ``n`` ranks:

1. Setup. Every rank opens the volume and computes the same list of present
   blocks in the planes; rank 0 also opens the file and creates or checks the
   dataset. One ``allgather`` of the setup errors: if any rank failed, every
   rank raises (the failing one its own error, the others
   :class:`RemoteRankError` naming it), so nobody waits for a dead peer.
2. Work. Rank ``r`` takes blocks ``r, r + n, r + 2n, ...``. Ranks 1..n-1 send
   ``("chunk", offset, bytes, mask, raw)`` to rank 0 with non-blocking
   point-to-point sends (at most ``SEND_WINDOW`` in flight), then, once all
   have completed, one sentinel: ``("done",)`` or ``("failed", message)``
   (MPI keeps the order of messages between two ranks). Rank 0
   writes its own chunks and, after each, the messages already arrived
   (``iprobe``, never a spin: it has its own work between probes); when its
   share is done it blocks in ``recv`` until it has one sentinel per other rank.
   A failure on rank 0 stops its writing but it keeps receiving (and dropping)
   chunks until every sentinel is in, so no sender is left blocked.
3. End. Rank 0 records the range as complete only if nothing failed, closes the
   file, and a last ``allgather`` shares the outcome and the counts.

No call depends on how many blocks each rank got, so an uneven split (3 blocks
over 2 ranks, or 0 blocks on some rank) cannot hang.

MPI is never initialised by importing this module or the package: mpi4py is
imported only by :func:`world_comm`, which the ``blockfs2hdf`` console script
calls when it runs under ``mpiexec`` (:func:`launched_by_mpiexec`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

from ..core import Directory
from ..core.errors import RemoteRankError
from ..core.parallel import bounded_map
from .hdf5 import ChunkWriter, ExportJob, Hdf5ExportResult, Hdf5Filters, Progress

logger = logging.getLogger(__name__)

__all__ = ["export_hdf5_mpi", "launched_by_mpiexec", "world_comm"]

CHUNK_TAG = 7301
# Chunks a worker rank may have sent that rank 0 has not received yet (memory: that many compressed chunks).
SEND_WINDOW = 8

# Variables that MPI launchers (MPICH/Hydra, Intel MPI, Open MPI, PMIx, Slurm) set in each rank.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


def launched_by_mpiexec(environ: Mapping[str, str] | None = None) -> bool:
    """True if this process is a rank started by ``mpiexec`` (or ``srun``)."""
    env = os.environ if environ is None else environ
    return any(name in env for name in _LAUNCHER_VARIABLES)


def world_comm() -> Any:
    """``MPI.COMM_WORLD``, initialising MPI (import mpi4py only here)."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("install mpi4py and an MPI runtime (pip install mpi4py mpich) to run under mpiexec") from e
    return MPI.COMM_WORLD


def _agree(comm: Any, error: BaseException | None, stage: str, payload: Any = None) -> list[Any]:
    """Collective: share each rank's error (and a payload); raise on every rank if any failed."""
    message = None if error is None else f"{type(error).__name__}: {error}"
    gathered = comm.allgather((message, payload))
    if error is not None:
        raise error
    for other, (msg, _) in enumerate(gathered):
        if msg is not None:
            raise RemoteRankError(f"rank {other} of {len(gathered)} failed while {stage}: {msg}") from None
    return [p for _, p in gathered]


def export_hdf5_mpi(
    comm: Any,
    src: Directory | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    name: str,
    filters: Hdf5Filters,
    z0: int = 0,
    z1: int | None = None,
    n_threads: int | None = None,
    progress: Progress | None = None,
) -> Hdf5ExportResult:
    """Export over the ranks of ``comm`` (every rank calls it); see the module docstring."""
    rank, size = comm.Get_rank(), comm.Get_size()
    threads = n_threads or max(1, (os.cpu_count() or 1) // size)
    start = time.perf_counter()
    job: ExportJob | None = None
    writer: ChunkWriter | None = None
    error: BaseException | None = None
    try:
        job = ExportJob.prepare(src, filters, z0, z1)
        if rank == 0:
            writer = ChunkWriter(dest, name, job, filters)
    except Exception as e:  # shared with every rank below, then re-raised here
        error = e
    try:
        _agree(comm, error, "preparing the export")
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    job = cast(ExportJob, job)  # set on every rank once no rank failed
    mine = job.blocks[rank::size]
    if rank == 0:
        writer = cast(ChunkWriter, writer)
        try:
            error, failed = _write_as_rank0(comm, writer, job, mine, threads, progress)
            if error is None and not failed:
                writer.finish()
        except Exception as e:
            error = e
        try:  # every error must reach the last allgather, or the other ranks would wait forever
            writer.close()
        except Exception as e:
            error = error or e
        counts = (writer.chunks_written, writer.raw_bytes, writer.stored_bytes)
    else:
        error = _send_as_worker(comm, job, mine, threads)
        counts = None
    gathered = _agree(comm, error, "exporting", counts)
    chunks, raw, stored = gathered[0]
    return Hdf5ExportResult(
        os.fspath(dest), name, job.z0, job.z1, chunks, raw, stored, time.perf_counter() - start, size
    )


def _write_as_rank0(
    comm: Any, writer: ChunkWriter, job: ExportJob, mine: list[Any], threads: int, progress: Progress | None
) -> tuple[BaseException | None, bool]:
    """Write own chunks and the others'; return (own error, whether another rank failed)."""
    from mpi4py import MPI

    size = comm.Get_size()
    pending_sentinels = size - 1
    error: BaseException | None = None
    failed = False

    def handle(message: tuple[Any, ...], source: int) -> None:
        nonlocal pending_sentinels, failed
        kind = message[0]
        if kind == "chunk":
            if error is None and not failed:
                writer.write(*message[1:])
                if progress is not None:
                    progress(1)
        elif kind == "done":
            pending_sentinels -= 1
        else:
            pending_sentinels -= 1
            failed = True
            logger.error("rank %d failed: %s", source, message[1])

    status = MPI.Status()
    own = bounded_map(job.encode_at, mine, threads)
    try:
        writer.clear_stale_chunks()
        for item in own:
            if failed:
                break
            writer.write(*item)
            if progress is not None:
                progress(1)
            while pending_sentinels and comm.iprobe(source=MPI.ANY_SOURCE, tag=CHUNK_TAG, status=status):
                source = status.Get_source()
                handle(comm.recv(source=source, tag=CHUNK_TAG), source)
    except Exception as e:
        error = e
        logger.error("rank 0 failed, draining the other ranks: %s", e)
    finally:
        own.close()
    while pending_sentinels:
        message = comm.recv(source=MPI.ANY_SOURCE, tag=CHUNK_TAG, status=status)
        try:
            handle(message, status.Get_source())
        except Exception as e:  # a write failed: keep draining so no sender blocks forever
            if error is None:
                error = e
                logger.error("rank 0 failed, draining the other ranks: %s", e)
    return error, failed


def _send_as_worker(comm: Any, job: ExportJob, mine: list[Any], threads: int) -> BaseException | None:
    """Compress this rank's blocks and send them to rank 0; always end with a sentinel.

    Sends are non-blocking with at most ``SEND_WINDOW`` in flight, so this
    rank compresses the next block instead of waiting (MPI spins while it
    waits) for rank 0 to take the last one.
    """
    pending: deque[Any] = deque()
    error: BaseException | None = None
    try:
        for offset, data, mask, raw in bounded_map(job.encode_at, mine, threads):
            pending.append(comm.isend(("chunk", offset, data, mask, raw), dest=0, tag=CHUNK_TAG))
            while pending and (len(pending) >= SEND_WINDOW or pending[0].Test()):
                pending.popleft().wait()
    except Exception as e:
        error = e
    for request in pending:
        request.wait()
    if error is not None:
        comm.send(("failed", f"{type(error).__name__}: {error}"), dest=0, tag=CHUNK_TAG)
        return error
    comm.send(("done",), dest=0, tag=CHUNK_TAG)
    return None
