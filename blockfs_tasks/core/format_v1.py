"""Reading a directory file of format 1.0.0 (the original blockfs) into the 2.x index layout."""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np

from .checks import check_int
from .codec import BlockCodec
from .errors import FormatError
from .grid import XYZ, BlockGrid
from .spec import (
    HEADER,
    INDEX_DTYPE,
    MAX_OFFSET,
    VERSION_1,
    DirectoryContents,
    VolumeSpec,
    check_names,
    dtype_from_name,
    max_frame_size,
    metadata_errors,
    read_array,
)

_V1_INDEX_ALLOWANCE = 64 << 20  # a 1.0.0 grid may need this much index beyond 16 x its stored entries

_V1_KEYS = {
    "XBlockSize", "YBlockSize", "ZBlockSize", "NOffsetBits", "NSizeBits",
    "XExtent", "YExtent", "ZExtent", "DType", "BlockFilenames",
    "XStride", "YStride", "ZStride", "Compression", "CompressionLvl", "Version",
}


def _v1_int(md: dict[str, Any], key: str) -> int:
    return check_int(md[key], key, error=FormatError)


def _check_v1_strides(path: str, strides: XYZ, grid_xyz: XYZ) -> list[int]:
    """Axes (0 = x) whose stride matters, largest stride first; raise if two blocks share an entry.

    An axis with one block never multiplies its stride. The others, sorted by
    stride, must each step over every entry the smaller ones reach (mixed
    radix, as the original wrote x fastest, then y, then z).
    """
    axes = sorted((a for a in range(3) if grid_xyz[a] > 1), key=lambda a: strides[a])
    reach = 0
    for a in axes:
        if strides[a] <= reach:
            raise FormatError(
                f"{path}: format 1.0.0 strides (x, y, z) {strides} map two blocks onto one entry "
                f"(blocks per axis {grid_xyz}): each must be at least 1 and exceed what the smaller ones reach"
            )
        reach += strides[a] * (grid_xyz[a] - 1)
    return axes[::-1]


def read_v1(path: str, f: BinaryIO, size: int, md: dict[str, Any], index_offset: int) -> DirectoryContents:
    """Decode an original blockfs 1.0.0 directory into the version 2 index layout.

    Works from the stored entries (memory in proportion to the file), and
    refuses a grid far larger than the file could describe.
    """
    with metadata_errors(path, "format 1.0.0 metadata", label_format_errors=True):
        grid = BlockGrid(
            (md["XExtent"], md["YExtent"], md["ZExtent"]),
            (md["XBlockSize"], md["YBlockSize"], md["ZBlockSize"]),
        )
        codec = BlockCodec(md["Compression"], md["CompressionLvl"])
        app = {k: v for k, v in md.items() if k not in _V1_KEYS}
        spec = VolumeSpec(grid, dtype_from_name(md["DType"]), codec, app)
        names = check_names(path, md["BlockFilenames"], relative=False)
        n_offset_bits, n_size_bits = _v1_int(md, "NOffsetBits"), _v1_int(md, "NSizeBits")
        strides = (_v1_int(md, "XStride"), _v1_int(md, "YStride"), _v1_int(md, "ZStride"))
    entry_size = (n_offset_bits + n_size_bits + 7) // 8
    if not names or not 1 <= entry_size <= 8 or n_offset_bits < 0 or n_size_bits < 1:
        raise FormatError(f"{path}: format 1.0.0 metadata with no block files or entries over 64 bits")
    gz, gy, gx = grid.grid_shape
    axes = _check_v1_strides(path, strides, (gx, gy, gz))
    n_stored = max(size - index_offset, 0) // entry_size if index_offset >= HEADER.size else 0
    n = grid.n_blocks
    if n * INDEX_DTYPE.itemsize > _V1_INDEX_ALLOWANCE and n > 16 * n_stored:
        raise FormatError(
            f"{path}: format 1.0.0 directory of {size} bytes ({n_stored} entries) claims {n} blocks; "
            f"refusing to index a grid that much larger than its file"
        )
    f.seek(index_offset)
    raw = read_array(f, np.dtype(np.uint8), n_stored * entry_size).reshape(-1, entry_size)
    value = np.zeros(len(raw), np.uint64)
    for b in range(entry_size):
        value |= raw[:, b].astype(np.uint64) << np.uint64(8 * b)
    offset = value & np.uint64((1 << n_offset_bits) - 1) if n_offset_bits < 64 else value
    block_size = (value >> np.uint64(n_offset_bits)) if n_offset_bits < 64 else np.zeros_like(value)
    slots = np.flatnonzero(block_size)
    rest, coords = slots.astype(np.int64), {}
    for a in axes:  # mixed-radix decode of the slot into block coordinates
        if strides[a] >= 1 << 62:  # beyond any stored entry: coordinate 0
            coords[a] = np.zeros_like(rest)
            continue
        coords[a] = rest // strides[a]
        rest = rest - coords[a] * strides[a]
    counts = (gx, gy, gz)
    valid = rest == 0
    for a, c in coords.items():
        valid &= c < counts[a]
    slots = slots[valid]
    ix, iy, iz = (coords[a][valid] if a in coords else np.zeros(len(slots), np.int64) for a in range(3))
    positions = (iz * gy + iy) * gx + ix
    index = np.zeros(n, INDEX_DTYPE)
    # An implausible size or offset (no checksum says which bytes are wrong) is
    # clipped so that reading that block fails to decode instead of allocating.
    max_frame = max_frame_size(spec)
    index["offset"][positions] = np.minimum(offset[slots], np.uint64(MAX_OFFSET - 1))
    index["size"][positions] = np.minimum(block_size[slots], np.uint64(max_frame + 1))
    index["file"][positions] = slots % len(names) + 1
    return DirectoryContents(VERSION_1, spec, names, index, False)
