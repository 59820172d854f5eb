"""The MPI driver of the HDF5 export: every rank compresses, rank 0 also writes.

Every rank calls :func:`export_hdf5_mpi` with the same arguments (those of
:func:`blockfs_tasks.export.hdf5.export_hdf5`, plus the communicator). The protocol,
with ``n`` ranks and the ``N`` present blocks of the planes numbered in block
position order:

1. Setup. Every rank opens the volume and computes the same list of blocks;
   rank 0 also opens the file and creates or checks the dataset. One
   ``allgather`` shares each rank's setup error and its number of compressing
   threads ``t``: if any rank failed, every rank raises (the failing one its
   own error, the others :class:`RemoteRankError` naming it), so nobody waits
   for a dead peer.
2. Work, handed out by rank 0 as it goes, so fast ranks take more blocks and
   all ranks finish within about one block of each other. Each other rank
   ``r`` starts with the next ``credit = 4 t + 4`` blocks (in rank order).
   It compresses them in ``t`` threads and sends each chunk to rank 0 as a
   non-blocking point-to-point message ``("chunk", offset, bytes, mask, raw)``.
   For every chunk it receives, rank 0 replies to its sender with the index of
   the next block not yet handed out, or -1 when there is none (or when
   something failed). A rank ends when it has nothing queued or in flight and
   has had the reply to every chunk it sent; then it sends one sentinel,
   ``("done",)`` or ``("failed", message)``. Rank 0 takes blocks for itself
   from the same counter, compresses them in its own ``t`` threads, writes
   them, and between its own chunks writes and answers the messages already
   arrived (``iprobe``); when no block is left it receives (and answers) until
   it has one sentinel per other rank. A failure anywhere turns every reply
   into -1 and rank 0 drops the chunks still arriving, so every rank stops
   after the blocks it already holds.
3. End. Rank 0 records the range as complete only if nothing failed, closes the
   file, and a last ``allgather`` shares the outcome and the counts.

Why it cannot hang: every chunk message gets exactly one reply, a rank blocks
for a reply only when it has sent a chunk not yet answered and has nothing
else to do, and rank 0 keeps receiving until every sentinel is in. No call
depends on how many blocks a rank got (0 blocks on some rank is fine), and the
only collectives are the two ``allgather`` every rank makes exactly once.
MPI ranks spin while they wait in an MPI call; handing out work as it goes
keeps those waits short.

MPI is never initialised by importing this module or the package: mpi4py is
imported only by :func:`world_comm`, which the ``blockfs2hdf`` console script
calls when it runs under ``mpiexec`` (:func:`launched_by_mpiexec`), and by the
protocol itself, which runs only with a communicator made by it. The serial
driver (:mod:`.hdf5`) never imports this module.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from ..core.optional import require
from .errors import RemoteRankError
from .hdf5_chunks import Hdf5Filters
from .hdf5_writer import ChunkWriter, ExportJob, Hdf5ExportResult
from .planes import Progress, VolumeLike, default_threads

logger = logging.getLogger(__name__)

__all__ = ["export_hdf5_mpi", "launched_by_mpiexec", "world_comm"]

CHUNK_TAG = 7301  # other ranks -> rank 0: chunks and sentinels
WORK_TAG = 7302  # rank 0 -> other ranks: the next block index, or -1

# Variables that MPI launchers (MPICH/Hydra, Intel MPI, Open MPI, PMIx, Slurm) set in each rank.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


def launched_by_mpiexec(environ: Mapping[str, str] | None = None) -> bool:
    """True if this process is a rank started by ``mpiexec`` (or ``srun``)."""
    env = os.environ if environ is None else environ
    return any(name in env for name in _LAUNCHER_VARIABLES)


def world_comm() -> Any:
    """``MPI.COMM_WORLD``, initialising MPI (import mpi4py only here)."""
    mpi = require("mpi4py.MPI", None, "Running under mpiexec (with an MPI runtime, e.g. pip install mpich)")
    return mpi.COMM_WORLD


def _agree(comm: Any, error: BaseException | None, stage: str, payload: Any = None) -> list[Any]:
    """Collective: share each rank's error and a payload; raise on every rank if any failed."""
    message = None if error is None else f"{type(error).__name__}: {error}"
    gathered = comm.allgather((message, payload))
    if error is not None:
        raise error
    for other, (msg, _) in enumerate(gathered):
        if msg is not None:
            raise RemoteRankError(f"rank {other} of {len(gathered)} failed while {stage}: {msg}") from None
    return [p for _, p in gathered]


def _credit(threads: int) -> int:
    """Blocks a rank holds (queued, compressing or awaiting rank 0's reply) at once.

    Rank 0 answers between its own chunks, so a rank needs a few blocks queued
    beyond the ``2 t`` it compresses to keep busy while it waits for answers.
    """
    return 4 * threads + 4


def export_hdf5_mpi(
    comm: Any,
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
    """Export over the ranks of ``comm`` (every rank calls it); see the module docstring.

    The arguments are those of :func:`~blockfs_tasks.export.hdf5.export_hdf5`;
    ``n_threads`` is per rank (default: the cores divided among the ranks) and
    ``progress`` is called on rank 0 only. The result is the same on every rank.
    """
    filters = Hdf5Filters(compression, compression_opts, shuffle)
    rank, size = comm.Get_rank(), comm.Get_size()
    threads = max(1, default_threads(n_threads) if n_threads is not None else (os.cpu_count() or 1) // size)
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
        all_threads = _agree(comm, error, "preparing the export", threads)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    job = cast(ExportJob, job)  # set on every rank once no rank failed
    first, cursor = {}, 0
    for other in range(1, size):  # the first blocks of each other rank, in rank order
        n = min(_credit(all_threads[other]), len(job.blocks) - cursor)
        first[other], cursor = list(range(cursor, cursor + n)), cursor + n
    if rank == 0:
        writer = cast(ChunkWriter, writer)
        try:
            error, failed = _run_rank0(comm, writer, job, cursor, threads, progress)
            if error is None and not failed:
                writer.finish()
        except Exception as e:
            error = e
        except BaseException:  # Ctrl-C reaches every rank: roll the file back now, skip the last allgather
            writer.close()
            raise
        try:  # every error must reach the last allgather, or the other ranks would wait forever
            writer.close()
        except Exception as e:
            error = error or e
        counts = (writer.chunks_written, writer.raw_bytes, writer.stored_bytes)
    else:
        error = _run_worker(comm, job, first[rank], threads)
        counts = None
    gathered = _agree(comm, error, "exporting", counts)
    chunks, raw, stored = gathered[0]
    return Hdf5ExportResult(
        os.fspath(dest), name, job.z0, job.z1, chunks, raw, stored, time.perf_counter() - start, size
    )


def _run_rank0(
    comm: Any, writer: ChunkWriter, job: ExportJob, next_item: int, threads: int, progress: Progress | None
) -> tuple[BaseException | None, bool]:
    """Hand out blocks, compress and write own ones, write the others'.

    Returns (this rank's error, whether another rank failed).
    """
    from mpi4py import MPI

    pending_sentinels = comm.Get_size() - 1
    error: BaseException | None = None
    failed = False
    replies: deque[Any] = deque()
    own = written = 0
    start = time.perf_counter()

    def report() -> None:
        nonlocal written
        written += 1
        if progress is not None:
            progress(written, len(job.blocks))

    def hand_out() -> int:
        nonlocal next_item
        if error is not None or failed or next_item >= len(job.blocks):
            return -1
        next_item += 1
        return next_item - 1

    def handle(message: tuple[Any, ...], source: int) -> None:
        nonlocal pending_sentinels, failed
        kind = message[0]
        if kind == "chunk":
            replies.append(comm.isend(hand_out(), dest=source, tag=WORK_TAG))  # first: a failed write must not starve
            if error is None and not failed:
                writer.write(*message[1:])
                report()
        else:
            pending_sentinels -= 1
            if kind == "failed":
                failed = True
                logger.error("rank %d failed: %s", source, message[1])
        while replies and replies[0].Test():
            replies.popleft()

    status = MPI.Status()

    def drain(block: bool) -> None:
        """Handle the messages that have arrived (or wait for one)."""
        nonlocal error
        while pending_sentinels and (block or comm.iprobe(source=MPI.ANY_SOURCE, tag=CHUNK_TAG, status=status)):
            message = comm.recv(source=MPI.ANY_SOURCE, tag=CHUNK_TAG, status=status)
            block = False
            try:
                handle(message, status.Get_source())
            except Exception as e:  # a write failed: keep answering so no rank waits forever
                if error is None:
                    error = e
                    logger.error("rank 0 failed, stopping the other ranks: %s", e)

    with ThreadPoolExecutor(threads, thread_name_prefix="blockfs-hdf5") as pool:
        futures: deque[Future[Any]] = deque()
        try:
            writer.clear_stale_chunks()
            while error is None and not failed:
                while len(futures) < 2 * threads and (item := hand_out()) >= 0:
                    futures.append(pool.submit(job.encode_at, job.blocks[item]))
                if not futures:
                    break
                writer.write(*futures.popleft().result())
                own += 1
                report()
                drain(block=False)
        except Exception as e:
            error = e
            logger.error("rank 0 failed, stopping the other ranks: %s", e)
        finally:
            for future in futures:
                future.cancel()
    own_done = time.perf_counter() - start
    while pending_sentinels:
        drain(block=True)
    for request in replies:
        request.wait()
    logger.info(
        "rank 0: %d own chunks done at %.2f s, all %d chunks written at %.2f s",
        own, own_done, writer.chunks_written, time.perf_counter() - start,
    )
    return error, failed


def _run_worker(comm: Any, job: ExportJob, first: list[int], threads: int) -> BaseException | None:
    """Compress the blocks rank 0 hands out and send them; always end with a sentinel."""
    queue = deque(first)
    unanswered = 0  # chunks sent whose reply has not arrived
    sends: deque[Any] = deque()
    futures: deque[Future[Any]] = deque()
    error: BaseException | None = None
    start, waited, n = time.perf_counter(), 0.0, 0

    def take_reply() -> None:
        nonlocal unanswered
        item = comm.recv(source=0, tag=WORK_TAG)
        unanswered -= 1
        if item >= 0 and error is None:
            queue.append(item)

    with ThreadPoolExecutor(threads, thread_name_prefix="blockfs-hdf5") as pool:
        while True:
            while unanswered and comm.iprobe(source=0, tag=WORK_TAG):
                take_reply()
            while error is None and queue and len(futures) < 2 * threads:
                futures.append(pool.submit(job.encode_at, job.blocks[queue.popleft()]))
            if futures:
                future = futures.popleft()
                try:
                    offset, data, mask, raw = future.result()
                except Exception as e:
                    if error is None:
                        error = e
                        queue.clear()
                    continue
                if error is None:
                    sends.append(comm.isend(("chunk", offset, data, mask, raw), dest=0, tag=CHUNK_TAG))
                    unanswered += 1
                    n += 1
                while sends and sends[0].Test():
                    sends.popleft()
            elif unanswered:
                t = time.perf_counter()
                take_reply()
                waited += time.perf_counter() - t
            else:
                break
    for request in sends:
        request.wait()
    logger.info(
        "rank %d: %d chunks in %.2f s, %.2f s of it waiting for rank 0",
        comm.Get_rank(), n, time.perf_counter() - start, waited,
    )
    if error is not None:
        comm.send(("failed", f"{type(error).__name__}: {error}"), dest=0, tag=CHUNK_TAG)
        return error
    comm.send(("done",), dest=0, tag=CHUNK_TAG)
    return None
