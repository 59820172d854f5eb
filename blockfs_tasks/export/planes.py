"""Per-plane exports: output paths, what is done, and reading planes with bounded memory.

A per-plane export writes plane ``z`` of a volume to ``pattern % z`` (for
example ``/out/img_%04d.tiff``). Each file is published atomically
(:func:`blockfs_tasks.core.atomic.published`), so **a plane is complete exactly
when its file exists**: :func:`plane_complete` and :func:`missing_planes` are
cheap ``stat`` calls that a Luigi task's ``complete()`` can use.

What happens to outputs that already exist is the ``existing`` rule
(:data:`EXISTING_RULES`):

* ``"replace"`` (default): every plane of the range is written again and
  atomically replaces the old file (a reader sees the old or the new file);
* ``"skip"``: planes whose file exists are left alone (resume an interrupted
  export without redoing finished planes);
* ``"error"``: :class:`~blockfs_tasks.core.errors.OutputExistsError` before
  anything is written if any plane of the range exists.

Reading: a plane of a blockfs volume is spread over every block of a z-slab, so
the exporters read *groups of planes* inside one block slab, in *bands* of
block rows, decoding each block once per group (:func:`read_region`). How many
planes and rows that is comes from a memory budget, never from the z extent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import numpy as np

from ..core import Directory
from ..core.atomic import TEMP_MARKER, sweep_temporaries
from ..core.checks import check_int, check_positive
from ..core.errors import ConfigurationError, DestinationError, OutOfBoundsError, OutputExistsError
from ..core.parallel import bounded_map

logger = logging.getLogger(__name__)

#: Default peak memory an export may use for plane data, in bytes (1 GiB).
DEFAULT_MEMORY_BUDGET = 1 << 30

#: The rules for outputs that already exist (see the module docstring).
EXISTING_RULES = ("replace", "skip", "error")

#: A volume given as an open Directory or the path of its directory file.
VolumeLike = Union[Directory, str, "os.PathLike[str]"]

#: Progress callback ``progress(done, total)``: how much of the call's work is done, in the
#: exporter's units (planes, plane rows, chunks), so ``100 * done / total`` is the percentage.
#: Called during the work (never only at the end), on the calling thread or a worker thread.
Progress = Callable[[int, int], None]


def open_volume(volume: VolumeLike) -> Directory:
    """``volume`` itself if it is a Directory, else the volume at that path, read-only."""
    if isinstance(volume, Directory):
        return volume
    return Directory.open(volume)


def default_threads(n_threads: int | None) -> int:
    """``n_threads``, or one per core when None; at least 1 (ConfigurationError otherwise)."""
    if n_threads is None:
        return os.cpu_count() or 1
    return check_positive(n_threads, "n_threads")


def plane_slabs(volume: VolumeLike, planes_per_slab: int | None = None) -> list[tuple[int, int]]:
    """Plan an export as slabs ``[z0, z1)`` covering every plane, one task (and checkpoint) each.

    ``planes_per_slab`` (default: the block depth) is rounded up to a multiple
    of the block depth, so that no block is decoded by two slabs.
    """
    directory = open_volume(volume)
    nz, bz = directory.shape[0], directory.grid.block_shape[0]
    step = bz if planes_per_slab is None else check_positive(planes_per_slab, "planes_per_slab")
    step = -(-step // bz) * bz
    return [(z, min(z + step, nz)) for z in range(0, nz, step)]


def check_pattern(pattern: str | os.PathLike[str]) -> str:
    """Return ``pattern`` as a string if ``pattern % z`` names a different file for each z.

    Raises :class:`ConfigurationError` for a pattern without exactly one
    integer field (``%d``, ``%04d``, ``%i``...), e.g. ``"img.tif"`` or ``"%s_%d"``.
    """
    text = os.fspath(pattern)
    try:
        names = [text % z for z in (0, 1, 10)]
    except (TypeError, ValueError) as e:
        raise ConfigurationError(
            f"Expected an output pattern with one %d-style field for the plane number, "
            f"like '/out/img_%04d.tiff'. Got {text!r} instead ({e})."
        ) from None
    if len(set(names)) != 3:
        raise ConfigurationError(
            f"Expected an output pattern with one %d-style field for the plane number, "
            f"like '/out/img_%04d.tiff'. Got {text!r} instead (every plane would get the same name)."
        )
    return text


def plane_path(pattern: str, z: int) -> str:
    """The output file of plane ``z``: ``pattern % z``."""
    return check_pattern(pattern) % z


def plane_complete(pattern: str, z: int) -> bool:
    """True if plane ``z`` has been exported (its file is only ever published whole)."""
    return os.path.exists(plane_path(pattern, z))


def missing_planes(pattern: str, z0: int, z1: int) -> list[int]:
    """The planes of ``[z0, z1)`` whose file does not exist yet, in z order."""
    check_pattern(pattern)
    return [z for z in range(z0, z1) if not os.path.exists(pattern % z)]


def resolve_z_range(directory: Directory, z0: int, z1: int | None) -> tuple[int, int]:
    """``(z0, z1)`` with ``z1=None`` meaning the last plane; raise unless ``0 <= z0 <= z1 <= z extent``."""
    nz = directory.shape[0]
    z0 = check_int(z0, "z0", error=OutOfBoundsError)
    z1 = nz if z1 is None else check_int(z1, "z1", error=OutOfBoundsError)
    if not 0 <= z0 <= z1 <= nz:
        raise OutOfBoundsError(
            f"{directory.directory_filename}: plane range [z0, z1) = [{z0}, {z1}) is outside the volume: "
            f"expected 0 <= z0 <= z1 <= {nz} (the z extent)"
        )
    return z0, z1


def planes_to_write(pattern: str, z0: int, z1: int, existing: str = "replace") -> list[int]:
    """The planes of ``[z0, z1)`` to write under the ``existing`` rule; make their folders.

    Temporaries that a killed export left for these planes are removed first
    (:func:`sweep_plane_temporaries`).

    Raises :class:`OutputExistsError` (rule ``"error"``) naming the first
    existing file, :class:`ConfigurationError` for an unknown rule and
    :class:`DestinationError` for a folder that cannot be created or written.
    """
    if existing not in EXISTING_RULES:
        raise ConfigurationError(f"Invalid existing={existing!r}; expected one of {EXISTING_RULES}")
    check_pattern(pattern)
    sweep_plane_temporaries(pattern, z0, z1)
    if existing == "replace":
        planes = list(range(z0, z1))
    else:
        done = [z for z in range(z0, z1) if os.path.exists(pattern % z)]
        if done and existing == "error":
            raise OutputExistsError(
                f"{pattern % done[0]}: the output of plane {done[0]} already exists "
                f"({len(done)} of planes [{z0}, {z1}) exist); use existing='replace' or 'skip'"
            )
        planes = sorted(set(range(z0, z1)) - set(done))
    for folder in sorted({os.path.dirname(os.path.abspath(pattern % z)) for z in planes}):
        make_folder(folder, pattern)
    return planes


def make_folder(folder: str, pattern: str) -> None:
    """Create ``folder`` (and parents) for outputs of ``pattern``; raise DestinationError if impossible."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DestinationError(
            f"{folder}: cannot create the output folder for pattern {pattern!r}: {e.strerror or e}"
        ) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DestinationError(f"{folder}: the output folder for pattern {pattern!r} is not writable")


def sweep_plane_temporaries(pattern: str, z0: int, z1: int) -> list[str]:
    """Remove the temporaries that dead exports left for planes ``[z0, z1)`` of ``pattern``.

    A killed export leaves one temporary per plane it was writing (full-size
    planes, possibly many). Only temporaries named after a plane of the range
    are considered, and of those only the ones whose process is gone
    (:func:`~blockfs_tasks.core.atomic.sweep_temporaries`), so a concurrent
    export on this or another host is never disturbed. One folder listing per
    output folder, whatever the number of planes. Returns the removed paths.
    """
    check_pattern(pattern)
    planes = {os.path.abspath(pattern % z) for z in range(z0, z1)}
    bases: set[str] = set()
    for folder in {os.path.dirname(p) for p in planes}:
        try:
            entries = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if TEMP_MARKER in entry:
                base = os.path.join(folder, entry.rsplit(TEMP_MARKER, 1)[0])
                if base in planes:
                    bases.add(base)
    removed = [tmp for base in sorted(bases) for tmp in sweep_temporaries(base)]
    if removed:
        logger.info("removed %d temporary files of planes of %s left by a killed export", len(removed), pattern)
    return removed


def contiguous_groups(planes: Sequence[int], block_depth: int, max_planes: int) -> list[tuple[int, int]]:
    """Split sorted ``planes`` into ranges ``[za, zb)`` of consecutive planes in one block slab.

    Each range holds at most ``max_planes`` planes, so reading it decodes each
    block of the slab once (when ``max_planes >= block_depth``).
    """
    groups: list[tuple[int, int]] = []
    for z in planes:
        if groups:
            za, zb = groups[-1]
            if z == zb and z // block_depth == za // block_depth and zb - za < max_planes:
                groups[-1] = (za, zb + 1)
                continue
        groups.append((z, z + 1))
    return groups


def read_region(directory: Directory, z0: int, z1: int, y0: int, y1: int, n_threads: int) -> np.ndarray:
    """Planes ``[z0, z1)``, rows ``[y0, y1)``, every column, as a (z, y, x) array.

    Decodes each overlapping block once with ``n_threads`` threads (Blosc
    releases the GIL); at most ``2 * n_threads`` decoded blocks exist at once
    besides ``out``. Absent blocks read as zeros.
    """
    nx = directory.shape[2]
    out = np.zeros((z1 - z0, y1 - y0, nx), directory.dtype)
    origins = list(directory.grid.origins_in_region(z0, z1, y0, y1, 0, nx))

    def fill(origin: tuple[int, int, int]) -> None:
        bx, by, bz = origin
        if not directory.has_block(bx, by, bz):
            return  # absent: out starts as zeros
        block = directory.read_block(bx, by, bz)
        sz, sy, sx = block.shape
        za, zb = max(z0, bz), min(z1, bz + sz)
        ya, yb = max(y0, by), min(y1, by + sy)
        out[za - z0 : zb - z0, ya - y0 : yb - y0, bx : bx + sx] = block[za - bz : zb - bz, ya - by : yb - by]

    for _ in bounded_map(fill, origins, n_threads):
        pass
    return out


def iter_planes(
    volume: VolumeLike,
    planes: Sequence[int],
    n_threads: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    bytes_per_plane: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(z, plane)`` for sorted ``planes``, reading groups of whole planes.

    A group holds as many planes as fit in ``memory_budget`` at
    ``bytes_per_plane`` each (default: the plane's own size; pass more when the
    consumer needs working memory per plane), at most one block depth, so
    memory is bounded whatever the z extent. Raises ConfigurationError when
    not even one plane fits.
    """
    directory = open_volume(volume)
    threads = default_threads(n_threads)
    nz, ny, nx = directory.shape
    plane_bytes = ny * nx * directory.dtype.itemsize
    per_plane = max(bytes_per_plane or plane_bytes, 1)
    fit = memory_budget // per_plane
    if fit < 1:
        raise ConfigurationError(
            f"{directory.directory_filename}: memory_budget={memory_budget} bytes is below the "
            f"{per_plane} bytes that one {ny}x{nx} plane needs; raise memory_budget"
        )
    bz = directory.grid.block_shape[0]
    for za, zb in contiguous_groups(planes, bz, min(fit, bz)):
        group = read_region(directory, za, zb, 0, ny, threads)
        for i in range(zb - za):
            yield za + i, group[i]
        del group
