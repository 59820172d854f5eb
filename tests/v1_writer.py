"""An independent writer of original blockfs 1.0.0 volumes, for tests only.

Written from the format 1.0.0 description (the docstring of
``blockfs_tasks.core.format``) and the original project's documentation, NOT
from the package's reader, so that a bug shared by writer and reader cannot
hide. What it writes, like the original blockfs:

* a directory file: ``b"BlockFS\\0"``, u32 length of the JSON metadata, u32
  offset of the first entry (16 + that length, no padding), the JSON, then one
  little-endian entry of ``(NOffsetBits + NSizeBits + 7) // 8`` bytes per slot,
  ``value = offset + (size << NOffsetBits)``;
* entry slot ``i = x//XB * XStride + y//YB * YStride + z//ZB * ZStride``; its
  block lives in ``BlockFilenames[i % len(BlockFilenames)]``;
* the directory file ends after the highest slot ever written (the original
  wrote entries by seeking, so never-written trailing slots are simply absent);
* block files hold Blosc1 frames (numcodecs ``Blosc``, byte shuffle), one after
  another, every listed file exists even when empty.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numcodecs import Blosc

MAGIC = b"BlockFS\0"
BLOSC_MAX_OVERHEAD = 16


@dataclass
class V1Volume:
    """What :func:`write_v1_volume` wrote."""

    path: str
    block_files: list[str]
    written: list[tuple[int, int, int]]  # origins (x, y, z) of the blocks stored
    entry_size: int
    n_entries: int  # entries actually present in the directory file
    strides_xyz: tuple[int, int, int]
    metadata: dict[str, Any] = field(default_factory=dict)


def _grid(extent: int, block: int) -> int:
    return (extent + block - 1) // block


def write_v1_volume(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    block_xyz: tuple[int, int, int],
    *,
    compression: str = "zstd",
    level: int = 5,
    n_files: int = 2,
    keep: Callable[[int, int, int], bool] | None = None,
    metadata: dict[str, Any] | None = None,
    absolute_names: bool = True,
    strides_xyz: tuple[int, int, int] | None = None,
    order_seed: int = 0,
) -> V1Volume:
    """Store the (z, y, x) array ``volume`` as an original blockfs 1.0.0 volume.

    Parameters
    ----------
    path
        The directory file to write; block files are ``<path>.0`` ... beside it.
    volume
        The voxels, (z, y, x).
    block_xyz
        Block size in XYZ order.
    keep
        ``keep(x, y, z)`` decides whether the block at that origin is written;
        blocks left out are never-written blocks (they must read as zeros).
    metadata
        Application keys stored beside the format's own, as the original did.
    absolute_names
        Store absolute block file paths (the original did whenever it was given
        an absolute directory path); otherwise bare file names.
    strides_xyz
        Entry strides; default x fastest, then y, then z (the original's).
    order_seed
        Blocks are appended to their files in a shuffled order, so a reader
        must use the stored offsets rather than assume an order.
    """
    path = os.path.abspath(os.fspath(path))
    ez, ey, ex = volume.shape
    bx, by, bz = block_xyz
    gx, gy = _grid(ex, bx), _grid(ey, by)
    if strides_xyz is None:
        strides_xyz = (1, gx, gx * gy)
    sx, sy, sz = strides_xyz
    dtype = volume.dtype

    def slot(x: int, y: int, z: int) -> int:
        return (x // bx) * sx + (y // by) * sy + (z // bz) * sz

    n_slots = max(slot(x, y, z) for x, y, z in _origins(ex, ey, ez, bx, by, bz)) + 1
    largest = bx * by * bz * dtype.itemsize + BLOSC_MAX_OVERHEAD
    n_size_bits = largest.bit_length()
    n_offset_bits = (largest * (-(-n_slots // n_files))).bit_length()
    entry_size = (n_offset_bits + n_size_bits + 7) // 8
    if entry_size > 8:
        raise ValueError("this volume needs entries over 64 bits")

    names = [f"{path}.{i}" for i in range(n_files)]
    stored_names = names if absolute_names else [os.path.basename(n) for n in names]
    origins = [o for o in _origins(ex, ey, ez, bx, by, bz) if keep is None or keep(*o)]
    order = np.random.default_rng(order_seed).permutation(len(origins))
    codec = Blosc(cname=compression, clevel=level, shuffle=Blosc.SHUFFLE)

    entries: dict[int, tuple[int, int]] = {}
    ends = [0] * n_files
    handles = [open(n, "wb") for n in names]
    try:
        for k in order:
            x, y, z = origins[k]
            block = np.ascontiguousarray(volume[z : z + bz, y : y + by, x : x + bx])
            frame = codec.encode(block)
            i = slot(x, y, z)
            f = i % n_files
            handles[f].write(frame)
            entries[i] = (ends[f], len(frame))
            ends[f] += len(frame)
    finally:
        for h in handles:
            h.close()

    md: dict[str, Any] = dict(metadata or {})
    md.update(
        {
            "XBlockSize": bx, "YBlockSize": by, "ZBlockSize": bz,
            "DType": dtype.name,
            "NOffsetBits": n_offset_bits, "NSizeBits": n_size_bits,
            "XExtent": ex, "YExtent": ey, "ZExtent": ez,
            "BlockFilenames": stored_names,
            "XStride": sx, "YStride": sy, "ZStride": sz,
            "Compression": compression, "CompressionLvl": level,
            "Version": "1.0.0",
        }
    )
    raw_md = json.dumps(md).encode("utf-8")
    n_entries = max(entries) + 1 if entries else 0
    table = bytearray(n_entries * entry_size)
    for i, (offset, size) in entries.items():
        value = offset + (size << n_offset_bits)
        table[i * entry_size : (i + 1) * entry_size] = value.to_bytes(entry_size, "little")
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", len(raw_md), len(MAGIC) + 8 + len(raw_md)))
        f.write(raw_md)
        f.write(bytes(table))
    return V1Volume(
        path, names, origins, entry_size, n_entries, strides_xyz, dict(metadata or {})
    )


def _origins(ex: int, ey: int, ez: int, bx: int, by: int, bz: int) -> Iterable[tuple[int, int, int]]:
    for z in range(0, ez, bz):
        for y in range(0, ey, by):
            for x in range(0, ex, bx):
                yield (x, y, z)
