"""Read planning: a region's blocks read in file-offset order, adjacent frames in one read.

A volume written by a process pool interleaves its blocks over several
block files in the order the workers finished, so reading blocks in grid
order jumps back and forth in every file: on a cold page cache that costs
far more than the bytes. :func:`plan_runs` sorts the blocks of a read by
(file, offset) and merges frames that follow each other into *runs* of up
to ``max_run`` bytes; a run is one ``pread`` (after a ``POSIX_FADV_WILLNEED``
hint for the run a few places ahead), then each frame in it is checked and
decoded from a view of that buffer. Threads take runs in file order, so the
disk sees a few large sequential reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .grid import XYZ

#: Largest run read at once (bytes): large enough for sequential IO, small enough for threads x run in memory.
MAX_RUN = 4 << 20
#: Blocks below which a region is read block by block (a small read gains nothing from planning).
MIN_BLOCKS = 8


@dataclass(frozen=True)
class Frame:
    """One stored block: its origin (x, y, z) and where its frame lies."""

    origin: XYZ
    file: int  # index into the volume's block files (entry "file" - 1)
    offset: int
    size: int


@dataclass(frozen=True)
class Run:
    """Frames of one file that follow each other: one read of ``[start, stop)``."""

    file: int
    start: int
    stop: int
    frames: tuple[Frame, ...]


def plan_runs(frames: Sequence[Frame], max_run: int = MAX_RUN) -> list[Run]:
    """Group ``frames`` into runs of adjacent frames (file, then offset order), each at most ``max_run`` bytes.

    A frame larger than ``max_run`` is a run of its own. Frames of one file
    that leave a gap between them start a new run (the gap is not read).
    """
    runs: list[Run] = []
    current: list[Frame] = []
    for f in sorted(frames, key=lambda f: (f.file, f.offset)):
        if current:
            last, first = current[-1], current[0]
            if f.file != last.file or f.offset != last.offset + last.size or f.offset + f.size - first.offset > max_run:
                runs.append(_run(current))
                current = []
        current.append(f)
    if current:
        runs.append(_run(current))
    return runs


def _run(frames: list[Frame]) -> Run:
    last = frames[-1]
    return Run(frames[0].file, frames[0].offset, last.offset + last.size, tuple(frames))


def advise_willneed(fd: int, run: Run) -> None:
    """Ask the kernel to start reading ``run`` now (a hint; ignored where unsupported)."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, run.start, run.stop - run.start, os.POSIX_FADV_WILLNEED)
        except OSError:  # a hint only: a file system without it reads the same bytes
            pass


def frames_of_runs(
    runs: Sequence[Run],
    read_range: Callable[[int, int, int], bytes],
    fd_of: Callable[[int], int] | None = None,
    ahead: int = 4,
) -> Callable[[int], Iterator[tuple[Frame, np.ndarray]]]:
    """A function ``job(k)`` that reads run ``k`` and yields each of its frames with its bytes.

    ``read_range(file, offset, size)`` reads; ``fd_of(file)``, when given,
    is used to hint the run ``ahead`` places later (so the next reads are
    in flight while this one is decoded).
    """

    def job(k: int) -> Iterator[tuple[Frame, np.ndarray]]:
        run = runs[k]
        if fd_of is not None and k + ahead < len(runs):
            nxt = runs[k + ahead]
            advise_willneed(fd_of(nxt.file), nxt)
        # A read-only uint8 view, not a memoryview: google_crc32c takes the one, not the other.
        data = np.frombuffer(read_range(run.file, run.start, run.stop - run.start), np.uint8)
        for frame in run.frames:
            yield frame, data[frame.offset - run.start : frame.offset - run.start + frame.size]

    return job
