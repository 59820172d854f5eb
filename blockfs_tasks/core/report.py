"""What a volume holds (blockfs-info) and whether every byte of it is sound (blockfs-verify).

Both say what the volume's format lets them check: format 2.1.0 checksums its
header, metadata, index pages and blocks; 2.0.0 its index and blocks; 1.0.0
nothing, so a 1.0.0 block can only be checked by decoding it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import format as fmt
from .codecs import describe_loss
from .directory import REMOTE_READ_THREADS, Directory
from .errors import BlockfsError
from .grid import XYZ
from .parallel import bounded_map


def checks_of(version: str) -> str:
    """What verification can rely on in a volume of format ``version``, in plain words."""
    if version == fmt.VERSION_1:
        return "format 1.0.0: decode check only (this format has no checksums; blockfs-upgrade adds them)"
    if version == fmt.VERSION_2_0:
        return (
            "format 2.0.0: CRC-32C of the index and of each block, and decoding (its header and "
            "metadata have no checksum; blockfs-upgrade adds one)"
        )
    return "format 2.1.0: CRC-32C of the header and metadata, of each index page and of each block, and decoding"


def volume_info(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Format version, what it checks, extents, dtype, block size, codec and its loss bound, blocks, bytes, ratio.

    ``path`` may be a URL (``storage_options`` for fsspec): the whole index is fetched.
    """
    d = Directory.open(path, storage_options=storage_options)
    index = d.index
    present = index["file"] != 0
    stored = int(index["size"][present].sum(dtype=np.uint64))
    raw = _raw_bytes(d, np.flatnonzero(present))
    return {
        "path": d.directory_filename,
        "format_version": d.version,
        "checksums": checks_of(d.version),
        "extent_xyz": list(d.grid.extent_xyz),
        "shape_zyx": list(d.shape),
        "dtype": d.dtype.name,
        "block_size_xyz": list(d.grid.block_xyz),
        "codec": d.spec.codec.to_dict(),
        "compression": d.compression,
        "compression_level": d.compression_level,
        "shuffle": d.spec.codec.shuffle,
        "loss_bound": describe_loss(d.spec.codec, d.dtype),
        "blocks_present": int(present.sum()),
        "blocks_total": d.grid.n_blocks,
        "stored_bytes": stored,
        "raw_bytes": raw,
        "compression_ratio": round(raw / stored, 3) if stored else None,
        "block_files": d.block_filenames,
        **_space(d),
        "metadata": d.metadata,
    }


def _space(d: Directory) -> dict[str, Any]:
    """Live and dead bytes of the block files (:mod:`.versions.space`); none for a format 1.0.0 volume."""
    if d.version == fmt.VERSION_1 or d.remote:  # a remote volume: its published directory only
        return {}
    from .versions import space_usage

    space = space_usage(d.directory_filename)
    return {"live_bytes": space.live_bytes, "dead_bytes": space.dead_bytes, "commits": space.commits_live}


def _raw_bytes(d: Directory, positions: np.ndarray) -> int:
    """Uncompressed size of the blocks at ``positions``, edge blocks truncated."""
    counts = np.ones(len(positions), np.int64)
    for axis, i in enumerate(np.unravel_index(positions, d.grid.grid_shape)):
        size, extent = d.grid.block_shape[axis], d.shape[axis]
        counts *= np.minimum(extent - i.astype(np.int64) * size, size)
    return int(counts.sum()) * d.dtype.itemsize


@dataclass(frozen=True)
class BadBlock:
    """A block that failed verification."""

    origin_xyz: XYZ
    error: str

    def __str__(self) -> str:
        x, y, z = self.origin_xyz
        return f"block at (x, y, z) = ({x}, {y}, {z}): {self.error}"


@dataclass
class VerifyReport:
    """What :func:`verify_volume` checked and what failed."""

    path: str
    version: str
    blocks_checked: int = 0
    bad_blocks: list[BadBlock] = field(default_factory=list)
    bad_index_pages: list[str] = field(default_factory=list)  # one message per page (its blocks unchecked)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.bad_blocks and not self.bad_index_pages

    def summary(self) -> str:
        """One line: what was checked, how many blocks passed and failed."""
        good = self.blocks_checked - len(self.bad_blocks)
        line = f"{self.path}: {checks_of(self.version)}: {good} blocks good, {len(self.bad_blocks)} bad"
        if self.bad_index_pages:
            line += f"; {len(self.bad_index_pages)} index pages corrupt (their blocks could not be checked)"
        if self.blocks_checked == 0 and not self.bad_index_pages:
            line += " (the volume has no blocks: only its directory was checked)"
        return line


def _present_positions(index: np.ndarray | fmt.PagedIndex, bad_pages: set[int]) -> Iterator[np.ndarray]:
    """Positions of present blocks, page by page (bounded memory), skipping corrupt pages."""
    if not isinstance(index, fmt.PagedIndex):
        yield np.flatnonzero(index["file"])
        return
    for page in range(index.n_pages):
        if page not in bad_pages:
            first = page * index.page_entries
            yield np.flatnonzero(index[first : first + index.page_entries]["file"]) + first


def verify_volume(
    path: str,
    n_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Recompute every checksum the volume's format has and decode every present block.

    Header and metadata are checked on opening (an error there raises); every
    index page's CRC is recomputed; every present block is read, its CRC
    checked (format 2.x) and decoded. ``started`` gets the number of blocks
    to check, ``progress`` the number checked since its last call.
    """
    d = Directory.open(path, storage_options=storage_options)
    index = d.index
    page_errors = fmt.index_errors(index)
    bad_pages = set(page_errors)
    total = sum(len(chunk) for chunk in _present_positions(index, bad_pages))
    positions = (int(p) for chunk in _present_positions(index, bad_pages) for p in chunk)
    report = VerifyReport(d.directory_filename, d.version, total, [], list(page_errors.values()))
    if started is not None:
        started(total)

    def check(position: int) -> BadBlock | None:
        origin = d.grid.origin(position)
        try:
            d.read_block(*origin)
        except (BlockfsError, OSError) as e:
            return BadBlock(origin, str(e))
        return None

    threads = n_threads or (REMOTE_READ_THREADS if d.remote else os.cpu_count() or 1)  # remote: GETs in flight
    for result in bounded_map(check, positions, threads):
        if result is not None:
            report.bad_blocks.append(result)
        if progress is not None:
            progress(1)
    return report
