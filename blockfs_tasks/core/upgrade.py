"""blockfs-upgrade: rewrite a 1.0.0 or 2.0.0 volume's directory as format 2.1.0, with checksums.

Every present block is read and decoded before its CRC-32C goes into the new
index (a 2.0.0 block's stored CRC is checked first), so a block that was
already corrupt is reported, never blessed with a fresh checksum. The block
files are shared, not copied: a NEW directory in another folder gets hard
links beside it (same bytes, and the volume still moves with its folder). It
is published atomically (temporary file, fsync, rename), so
an interrupted upgrade leaves the old directory, and a rerun does the same
work again or, once the volume is 2.1.0, nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from . import format as fmt
from .atomic import fsync_folder, sweep_temporaries, write_atomically
from .codec import checksum
from .errors import (
    BlockfsError,
    ChecksumError,
    DestinationError,
    FormatError,
    MissingFileError,
    TruncatedFileError,
    VolumeExistsError,
)
from .journal import refuse_if_being_written
from .naming import resolve_block_path
from .parallel import bounded_map
from .report import BadBlock

logger = logging.getLogger(__name__)


@dataclass
class UpgradeReport:
    """What :func:`upgrade_volume` did."""

    source: str
    dest: str
    from_version: str
    blocks_checked: int = 0
    bad_blocks: list[BadBlock] = field(default_factory=list)
    published: bool = False  # a new directory file was written
    dropped_bad: bool = False  # bad blocks were left out of it (they read as zeros)

    def summary(self) -> str:
        """One line saying what happened."""
        if self.from_version == fmt.VERSION and not self.published:
            return f"{self.dest}: already format {fmt.VERSION}; nothing to do"
        bad = len(self.bad_blocks)
        head = f"{self.source} (format {self.from_version}): {self.blocks_checked - bad} blocks decoded, {bad} bad"
        if not self.published:
            return f"{head}; nothing was written (pass drop_bad / --drop-bad to leave the bad blocks out)"
        dropped = f"; the {bad} bad blocks were left out and read as zeros" if self.dropped_bad and bad else ""
        return f"{head}; wrote {self.dest} as format {fmt.VERSION}{dropped}"


class _Blocks:
    """Raw reads of a volume's block files (one descriptor per file, opened on first use)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def read(self, file: int, offset: int, size: int) -> bytes:
        i = file - 1
        with self._lock:
            if i not in self._fds:
                try:
                    self._fds[i] = os.open(self.paths[i], os.O_RDONLY)
                except FileNotFoundError as e:
                    raise MissingFileError(f"{self.paths[i]}: block file is missing") from e
        data = os.pread(self._fds[i], size, offset)
        if len(data) != size:
            raise TruncatedFileError(
                f"{self.paths[i]}: block file is truncated: bytes {offset}..{offset + size} needed, "
                f"the file ends at {offset + len(data)}"
            )
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _file_ids(paths: Iterable[str]) -> set[tuple[int, int]]:
    """(device, inode) of each existing file: hard links of one file count as the same."""
    ids = set()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def _check_destination(src: str, dest: str, block_paths: list[str]) -> None:
    """Refuse to replace a file at ``dest`` unless it is an earlier upgrade of ``src``."""
    if dest == src or not os.path.exists(dest):
        return
    try:
        existing = fmt.read_directory(dest)
    except (BlockfsError, OSError) as e:
        raise VolumeExistsError(f"{dest} exists and is not a readable blockfs volume ({e}); nothing was written") from e
    theirs = _file_ids(resolve_block_path(dest, n) for n in existing.block_files)
    if existing.version != fmt.VERSION or not theirs <= _file_ids(block_paths):
        raise VolumeExistsError(
            f"{dest} already exists and is not an upgrade of {src}; remove it or choose another name"
        )


def _share_block_files(block_paths: list[str], dest: str) -> list[str]:
    """Bare names of the block files beside ``dest``, hard-linking any that live elsewhere.

    A hard link shares the bytes (nothing is copied) and keeps the 2.x rule
    that block files sit beside their directory file, so moving the folder
    keeps the volume valid. The folder is fsynced before the directory that
    names the links is published.
    """
    folder = os.path.dirname(dest)
    names: list[str] = []
    linked = False
    for path in block_paths:
        name = os.path.basename(path)
        target = os.path.join(folder, name)
        if name in names:
            raise VolumeExistsError(
                f"{dest}: two block files are named {name!r}; upgrade each volume in its own folder"
            )
        names.append(name)
        if not os.path.exists(path) or (os.path.exists(target) and os.path.samefile(path, target)):
            continue  # a missing file's blocks were reported bad; one already in place is shared
        if os.path.exists(target):
            raise VolumeExistsError(f"{target} already exists and is not {path}; nothing was written")
        try:
            os.link(path, target)
        except OSError as e:
            raise DestinationError(
                f"cannot hard-link {path} to {target} ({e.strerror}); upgrade in place, or put NEW on "
                f"the same filesystem. Nothing was written"
            ) from e
        linked = True
    if linked:
        fsync_folder(dest)
    return names


def upgrade_volume(
    src: str,
    dest: str | None = None,
    n_threads: int | None = None,
    drop_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> UpgradeReport:
    """Rewrite the directory of volume ``src`` as format 2.1.0 at ``dest`` (default: in place).

    Each present block is read and decoded (and, for 2.0.0, its stored CRC
    checked) before its CRC-32C is recorded. If any block fails, nothing is
    written unless ``drop_bad``, which leaves those blocks out (they then
    read as zeros); the report lists them either way. ``started`` gets the
    number of blocks to check, ``progress`` the number checked since its last
    call. A volume with an open writing session or unmerged journals is refused.
    """
    src = os.path.abspath(src)
    dest = os.path.abspath(dest) if dest is not None else src
    refuse_if_being_written(src, "Nothing was written")
    contents = fmt.read_directory(src)
    report = UpgradeReport(src, dest, contents.version)
    if contents.version == fmt.VERSION and dest == src:
        return report
    block_paths = [resolve_block_path(src, n) for n in contents.block_files]
    _check_destination(src, dest, block_paths)
    sweep_temporaries(dest)
    spec = contents.spec
    index = np.array(contents.index)  # checks every page of a memory-mapped index
    positions = np.flatnonzero(index["file"])
    report.blocks_checked = len(positions)
    if started is not None:
        started(len(positions))
    blocks = _Blocks(block_paths)
    verify_stored = fmt.has_block_checksums(contents.version)

    def check(position: int) -> tuple[int, int | BadBlock]:
        entry = index[position]
        origin = spec.grid.origin(position)
        try:
            data = blocks.read(int(entry["file"]), int(entry["offset"]), int(entry["size"]))
            if verify_stored and checksum(data) != int(entry["crc32c"]):
                raise ChecksumError("checksum mismatch (stored bytes are corrupt)")
            spec.codec.decode(data, spec.dtype, spec.grid.block_shape_at(*origin))
        except (BlockfsError, OSError) as e:
            return position, BadBlock(origin, str(e))
        return position, checksum(data)

    try:
        for position, result in bounded_map(check, (int(p) for p in positions), n_threads or os.cpu_count() or 1):
            if isinstance(result, BadBlock):
                report.bad_blocks.append(result)
            else:
                index["crc32c"][position] = result
            if progress is not None:
                progress(1)
    finally:
        blocks.close()
    if report.bad_blocks and not drop_bad:
        return report
    for bad in report.bad_blocks:
        index[spec.grid.position(*bad.origin_xyz)] = 0
    names = _share_block_files(block_paths, dest)
    try:
        header = fmt.encode_directory_header(spec, names, index)
    except FormatError as e:
        raise FormatError(f"{src}: cannot be written as format {fmt.VERSION}: {e}") from e
    write_atomically(dest, [header, np.ascontiguousarray(index).data])
    report.published, report.dropped_bad = True, bool(report.bad_blocks)
    logger.info("%s", report.summary())
    return report
