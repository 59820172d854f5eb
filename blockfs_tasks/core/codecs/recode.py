"""Re-encode a volume with another codec: what ``blockfs-cp --compression`` does.

Every block present is decoded with the source's codec and written with the
new one into a new volume of the same grid, dtype and metadata; blocks never
written stay absent. The new volume is published by its ``close()`` (a
directory file that points only at synced frames), so an interrupted copy
leaves a volume holding the blocks committed so far and a session file;
rerunning refuses to overwrite it and names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from ..directory import Directory
from ..errors import ConfigurationError, VolumeExistsError

Block = tuple[np.ndarray, int, int, int]


def recode_volume(
    src: str,
    dest_folder: str,
    compression: str,
    compression_level: int | None = None,
    shuffle: int = 1,
    bitround_keepbits: int | None = None,
    n_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Copy ``src`` into ``dest_folder`` (same file name) re-encoded; return the new directory file's path.

    The codec arguments are :class:`Directory`'s. ``dest_folder`` is created
    if missing. An existing volume there is an error, never replaced. A codec
    that cannot store the dtype (a float codec for integer data) fails before
    anything is written. ``progress`` is called with 1 per block.
    """
    source = Directory.open(src)
    dest = os.path.join(os.path.abspath(dest_folder), os.path.basename(source.directory_filename))
    if dest == source.directory_filename:
        raise ConfigurationError(f"{src} is already in {dest_folder}; choose another destination folder")
    (ex, ey, ez), (bx, by, bz) = source.grid.extent_xyz, source.grid.block_xyz
    target = Directory(  # checks the codec and the dtype
        ex, ey, ez, source.dtype, dest, bx, by, bz, compression=compression, compression_level=compression_level,
        metadata=source.metadata, shuffle=shuffle, bitround_keepbits=bitround_keepbits,
    )
    if os.path.lexists(dest):
        raise VolumeExistsError(f"{dest} exists; remove it or choose another folder (nothing was written)")
    os.makedirs(dest_folder, exist_ok=True)
    target.create()

    def blocks() -> Iterator[Block]:
        for x, y, z in source.block_origins():
            yield source.read_block(x, y, z), x, y, z
            if progress is not None:
                progress(1)

    try:
        target.write_blocks(blocks(), n_threads)
    finally:
        target.close()
    return dest
