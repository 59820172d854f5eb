"""Writing one batch of a source into a blockfs volume: plain functions, no luigi.

A batch (see :mod:`.planning`) is written into its own block file and
fragment through the core's batch writer; once every batch is written,
:func:`blockfs_tasks.core.batch.build_directory` merges the fragments into the
directory file. A script, a job array or another workflow engine ingests a
volume with the same calls the Luigi tasks make::

    from blockfs_tasks.core.batch import build_directory
    from blockfs_tasks.ingest import open_source, plan_batches, plan_volume, write_batch

    with open_source("/data/scan/img_*.tif") as src:
        spec = plan_volume(src, block_xyz=(64, 64, 64))
        plan = plan_batches(spec.grid, spec.dtype.itemsize)
        for number in range(plan.n_batches):  # in any order, on any host, each once or again
            write_batch(src, "/data/vol.blockfs", spec, plan, number)
    build_directory("/data/vol.blockfs", spec, range(plan.n_batches))

Writing a batch again overwrites its own two files and nothing else, so an
interrupted run resumes by writing the batches whose fragment is missing
(:func:`blockfs_tasks.core.batch.batch_complete`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..core.atomic import sweep_temporaries
from ..core.batch import BatchWriter
from ..core.format import VolumeSpec
from ..core.grid import BlockGrid
from ..core.naming import block_file_name, fragment_name
from .errors import SourceError
from .planning import BatchPlan, Unit, blocks_of_unit
from .sources import Source, check_extent, open_source

logger = logging.getLogger(__name__)

#: ``progress(done, total, status)``: ``done`` of ``total`` block rows of the batch are
#: taken by the writer; ``status`` names the slab being read (None: unchanged).
Progress = Callable[[int, int, str | None], None]

#: What a writer takes: a (z, y, x) block and its first voxel (x, y, z).
Block = tuple[np.ndarray, int, int, int]


def check_source(source: Source, spec: VolumeSpec) -> None:
    """Raise SourceError if ``source`` no longer has the shape and dtype ``spec`` was planned from."""
    ex, ey, ez = spec.grid.extent_xyz
    check_extent(source, (ez, ey, ex))
    if np.dtype(source.dtype) != spec.dtype:
        raise SourceError(f"{source.path}: dtype is now {source.dtype}, planned {spec.dtype}")


#: Raw bytes read from the source at a time (at least one block row of a unit, at most half of it, rounded up).
PIECE_BYTES = 16 << 20


def read_pieces(
    units: Iterable[Unit], grid: BlockGrid, itemsize: int, piece_bytes: int = PIECE_BYTES
) -> list[Unit]:
    """Split each unit into pieces of whole block rows: about ``piece_bytes``, at most half the unit (rounded up).

    Pieces are what :func:`batch_blocks` reads at a time: while the blocks of
    one are compressed the next is read, so two pieces are in memory, never
    more than the unit the planner budgeted for. Pieces of a fixed size let a
    task reuse the memory of the pieces it is done with (a forked worker
    pays for every page it touches first) and start compressing soon.
    """
    _, by, bz = grid.block_xyz
    row_bytes = bz * by * grid.extent_xyz[0] * itemsize  # one block row of a unit, at most
    pieces = []
    for unit in units:
        rows = -(-(unit.y1 - unit.y0) // by)
        step = max(1, min(piece_bytes // row_bytes, -(-rows // 2))) * by
        pieces += [Unit(unit.z0, unit.z1, y, min(unit.y1, y + step)) for y in range(unit.y0, unit.y1, step)]
    return pieces


def batch_blocks(
    source: Source,
    spec: VolumeSpec,
    plan: BatchPlan,
    number: int,
    progress: Progress | None = None,
    observe: Callable[[int, int, int, int, np.ndarray], None] | None = None,
) -> Iterator[Block]:
    """Yield the blocks of batch ``number``, reading the source a piece (whole block rows of a unit) at a time.

    The source is checked against ``spec`` first (it may have changed since
    planning). The next piece is read in a background thread while the
    blocks of this one are taken (so reading overlaps compression); memory
    holds two pieces, at most one unit of raw data, as planned. ``observe(z0, z1,
    y0, y1, data)`` sees each piece as it is read, in order, in the reader
    thread (the pyramid's level-1 slabs: :mod:`blockfs_tasks.pyramid.prereduce`).
    """
    check_source(source, spec)
    grid = spec.grid
    pieces = read_pieces(plan.units(number), grid, spec.dtype.itemsize)
    by = grid.block_xyz[1]
    total = sum(-(-(p.y1 - p.y0) // by) for p in pieces)  # block rows of the batch
    done = 0

    def read(piece: Unit) -> np.ndarray:
        data = source.read(piece.z0, piece.z1, piece.y0, piece.y1)
        if observe is not None:
            observe(piece.z0, piece.z1, piece.y0, piece.y1, data)
        return data

    if not pieces:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="blockfs-source") as reader:
        upcoming = reader.submit(read, pieces[0])
        for k, piece in enumerate(pieces):
            if progress is not None:
                progress(done, total, f"planes {piece.z0}-{piece.z1}, rows {piece.y0}-{piece.y1}")
            data = upcoming.result()
            if k + 1 < len(pieces):
                upcoming = reader.submit(read, pieces[k + 1])
            row = piece.y0
            for x, y, z, where in blocks_of_unit(grid, piece):
                if y != row:  # the previous block row has been taken by the writer
                    done, row = done + 1, y
                    if progress is not None:
                        progress(done, total, None)
                yield data[where], x, y, z
            done += 1
            del data


def write_batch_blocks(
    dest: str,
    spec: VolumeSpec,
    number: int,
    blocks: Iterable[Block],
    extent: dict[str, Any] | None = None,
    n_threads: int = 1,
) -> int:
    """Write ``blocks`` as batch ``number`` of the volume ``dest``; return how many were written.

    The block file and then the fragment are published only once every
    block is durable; an exception leaves neither. ``extent`` (what the batch
    covers) is recorded in the fragment, so a changed plan is not taken for
    this one. Temporary files of an earlier, killed attempt are removed first.
    """
    dest = os.path.abspath(dest)
    sweep_temporaries(block_file_name(dest, number))
    with BatchWriter(dest, spec, number, extent) as writer:
        return writer.write_blocks(blocks, n_threads)


def write_batch(
    source: Source | str | os.PathLike[str],
    dest: str,
    spec: VolumeSpec,
    plan: BatchPlan,
    number: int,
    n_threads: int = 1,
    progress: Progress | None = None,
) -> str:
    """Cut batch ``number`` of ``plan`` out of ``source`` into blocks and write them; return the fragment path.

    Parameters
    ----------
    source
        An open :class:`~.sources.Source`, or a source string (opened and closed here).
    dest
        The volume's directory file; the batch writes ``<dest>.<number>`` and its fragment.
    spec
        The volume being written (:func:`~.planning.plan_volume`).
    plan
        The batches (:func:`~.planning.plan_batches` over ``spec.grid``).
    n_threads
        Threads compressing blocks.
    progress
        Called as block rows are written; see :data:`Progress`.

    Raises
    ------
    SourceError
        If the source cannot be read, or differs from ``spec``.
    """
    opened = open_source(source)
    try:
        n = write_batch_blocks(
            dest, spec, number, batch_blocks(opened, spec, plan, number, progress), plan.describe(number), n_threads
        )
    finally:
        if opened is not source:
            opened.close()
    logger.info("%s: batch %d wrote %d blocks", dest, number, n)
    return fragment_name(os.path.abspath(dest), number)
