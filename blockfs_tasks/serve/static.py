"""Export a blockfs volume or pyramid as a static Neuroglancer precomputed tree.

Unsharded: ``out/info`` and one file per chunk present, named as its URL
(``out/<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>``), any static file server or bucket
can serve it. With ``gzip=True`` each chunk file is gzipped and named
``<chunk>.gz``, the convention of cloud-volume / cloud-files for local files
(tensorstore's ``file://`` driver does not read those: leave gzip off for it).

Sharded (``neuroglancer_uint64_sharded_v1``, identity hash): each scale's
chunks go into ``<key>/<shard>.shard`` files. A chunk's id is the compressed
Morton code of its grid position (x, y, z bits interleaved, each axis using
``ceil(log2(grid size))`` bits); ``preshift_bits`` groups 2**p consecutive ids
(a small cube) into a minishard, ``minishard_bits`` and ``shard_bits`` take
the next bits. A shard file is a shard index (``2**minishard_bits`` pairs of
u64 [start, end) offsets of each minishard index, relative to the end of the
shard index), then each minishard's chunk data followed by its minishard index
(u64 arrays: delta-coded chunk ids, delta-coded offsets, sizes). With
``gzip=True`` chunk data and minishard indexes are gzipped.

Every file is published atomically and ``info`` is written last, so a tree
with an ``info`` is complete.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.atomic import write_atomically
from ..core.parallel import bounded_map
from .encodings import chunk_encoder
from .precomputed import PrecomputedVolume, Scale, open_precomputed

logger = logging.getLogger(__name__)

#: Default bits of a shard: 2**6 chunks (a 4x4x4 cube of chunks), 2**3 per minishard.
SHARD_CHUNK_BITS = 6
PRESHIFT_BITS = 3


@dataclass(frozen=True)
class Sharding:
    """A ``neuroglancer_uint64_sharded_v1`` spec with the identity hash."""

    preshift_bits: int
    minishard_bits: int
    shard_bits: int
    gzip: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``sharding`` object of a scale in ``info``."""
        encoding = "gzip" if self.gzip else "raw"
        return {
            "@type": "neuroglancer_uint64_sharded_v1",
            "preshift_bits": self.preshift_bits,
            "hash": "identity",
            "minishard_bits": self.minishard_bits,
            "shard_bits": self.shard_bits,
            "minishard_index_encoding": encoding,
            "data_encoding": encoding,
        }

    def locate(self, chunk_id: int) -> tuple[int, int]:
        """(shard, minishard) of a chunk id."""
        hashed = chunk_id >> self.preshift_bits
        minishard = hashed & ((1 << self.minishard_bits) - 1)
        shard = (hashed >> self.minishard_bits) & ((1 << self.shard_bits) - 1)
        return shard, minishard

    def shard_file(self, shard: int) -> str:
        """File name of a shard: lower-case hex, ``ceil(shard_bits / 4)`` digits."""
        return f"{shard:0{-(-self.shard_bits // 4)}x}.shard"


def grid_bits(grid_shape_xyz: Sequence[int]) -> tuple[int, int, int]:
    """Bits of each axis in the compressed Morton code: ``ceil(log2(n))``."""
    x, y, z = (max(0, int(n) - 1).bit_length() for n in grid_shape_xyz)
    return x, y, z


def compressed_morton_code(position_xyz: Sequence[int], grid_shape_xyz: Sequence[int]) -> int:
    """The chunk id of the chunk at grid position (x, y, z), as Neuroglancer computes it."""
    bits = grid_bits(grid_shape_xyz)
    code, out_bit = 0, 0
    for bit in range(max(bits)):
        for axis in range(3):
            if bit < bits[axis]:
                code |= ((int(position_xyz[axis]) >> bit) & 1) << out_bit
                out_bit += 1
    return code


def default_sharding(
    grid_shape_xyz: Sequence[int], gzip: bool = False, shard_chunk_bits: int = SHARD_CHUNK_BITS
) -> Sharding:
    """Shards of ``2**shard_chunk_bits`` chunks, minishards of ``2**PRESHIFT_BITS`` chunks."""
    total = sum(grid_bits(grid_shape_xyz))
    in_shard = min(total, shard_chunk_bits)
    preshift = min(in_shard, PRESHIFT_BITS)
    return Sharding(preshift, in_shard - preshift, total - in_shard, gzip)


def encode_shard(chunks: dict[int, bytes], sharding: Sharding) -> bytes:
    """One shard file holding ``chunks`` (chunk id -> encoded bytes)."""
    by_minishard: dict[int, list[int]] = defaultdict(list)
    for chunk_id in chunks:
        by_minishard[sharding.locate(chunk_id)[1]].append(chunk_id)
    n_minishards = 1 << sharding.minishard_bits
    index = np.zeros((n_minishards, 2), "<u8")
    parts: list[bytes] = []
    offset = 0
    for minishard in sorted(by_minishard):
        ids = sorted(by_minishard[minishard])
        starts, sizes = [], []
        for chunk_id in ids:
            data = chunks[chunk_id]
            starts.append(offset)
            sizes.append(len(data))
            parts.append(data)
            offset += len(data)
        table = np.zeros((3, len(ids)), "<u8")
        table[0] = np.diff(np.array(ids, np.uint64), prepend=np.uint64(0))
        ends = np.array(starts, np.uint64) + np.array(sizes, np.uint64)
        table[1, 0] = starts[0]
        table[1, 1:] = np.array(starts[1:], np.uint64) - ends[:-1]
        table[2] = sizes
        raw = table.tobytes()
        encoded = gzip_module.compress(raw, mtime=0) if sharding.gzip else raw
        index[minishard] = (offset, offset + len(encoded))
        parts.append(encoded)
        offset += len(encoded)
    return b"".join([index.tobytes(), *parts])


def _write_file(path: str, data: bytes) -> None:
    write_atomically(path, [data])


def _export_unsharded(
    source: PrecomputedVolume,
    scale: Scale,
    folder: str,
    gzip: bool,
    n_threads: int,
    progress: Callable[[int], None] | None,
    encoding: str = "raw",
) -> int:
    encode = chunk_encoder(scale.directory, encoding)

    def export(item: tuple[str, tuple[int, int, int]]) -> None:
        name, (x, y, z) = item
        data = encode(x, y, z)
        if gzip:
            _write_file(os.path.join(folder, name + ".gz"), gzip_module.compress(data, compresslevel=6, mtime=0))
        else:
            _write_file(os.path.join(folder, name), data)

    n = 0
    for _ in bounded_map(export, source.chunks(scale), n_threads):
        n += 1
        if progress is not None:
            progress(1)
    return n


def _export_sharded(
    scale: Scale, folder: str, sharding: Sharding, n_threads: int, progress: Callable[[int], None] | None,
    encoding: str = "raw",
) -> int:
    d = scale.directory
    encode = chunk_encoder(d, encoding)
    grid_xyz = tuple(reversed(d.grid.grid_shape))
    block_xyz = d.grid.block_xyz
    shards: dict[int, list[tuple[int, tuple[int, int, int]]]] = defaultdict(list)
    for origin in d:
        chunk_id = compressed_morton_code([o // b for o, b in zip(origin, block_xyz, strict=True)], grid_xyz)
        shards[sharding.locate(chunk_id)[0]].append((chunk_id, origin))

    def export(shard: int) -> int:
        chunks = {}
        for chunk_id, (x, y, z) in shards[shard]:
            data = encode(x, y, z)
            chunks[chunk_id] = gzip_module.compress(data, compresslevel=6, mtime=0) if sharding.gzip else data
        _write_file(os.path.join(folder, sharding.shard_file(shard)), encode_shard(chunks, sharding))
        return len(chunks)

    n = 0
    for count in bounded_map(export, sorted(shards), n_threads):
        n += count
        if progress is not None:
            progress(count)
    return n


def write_static_precomputed(
    volume_or_pyramid: str | PrecomputedVolume,
    out_folder: str,
    gzip: bool = False,
    sharded: bool = False,
    layer_type: str | None = None,
    resolution_nm_xyz: Sequence[float] | None = None,
    n_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    encoding: str = "raw",
) -> dict[str, Any]:
    """Write ``info`` and every chunk present of a volume or pyramid under ``out_folder``; return the info.

    Parameters
    ----------
    volume_or_pyramid
        A ``.blockfs`` directory file, a pyramid folder, or an open :class:`PrecomputedVolume`.
    out_folder
        Created if missing. Existing chunk files are overwritten.
    gzip
        Gzip the chunks (unsharded: ``<chunk>.gz`` files; sharded: gzip encodings).
    sharded
        Write ``neuroglancer_uint64_sharded_v1`` shard files instead of one file per chunk.
    layer_type, resolution_nm_xyz
        As for :func:`open_precomputed`, when a path is given.
    n_threads
        Threads reading, encoding and writing chunks (default: one per core).
    progress
        Called with the number of chunks written, as they are.
    encoding
        "raw" (what Neuroglancer and tensorstore read), or CloudVolume's
        "fpzip" or "kempressed" for float volumes (see :mod:`.encodings`).
    """
    source = (
        volume_or_pyramid
        if isinstance(volume_or_pyramid, PrecomputedVolume)
        else open_precomputed(volume_or_pyramid, layer_type, resolution_nm_xyz)
    )
    threads = n_threads or os.cpu_count() or 1
    info = source.info()
    os.makedirs(out_folder, exist_ok=True)
    for scale, scale_info in zip(source.scales, info["scales"], strict=True):
        chunk_encoder(scale.directory, encoding)  # an encoding the volume cannot have fails before any write
        scale_info["encoding"] = encoding
        folder = os.path.join(out_folder, scale.key)
        os.makedirs(folder, exist_ok=True)
        if sharded:
            sharding = default_sharding(tuple(reversed(scale.directory.grid.grid_shape)), gzip)
            scale_info["sharding"] = sharding.to_json()
            n = _export_sharded(scale, folder, sharding, threads, progress, encoding)
        else:
            n = _export_unsharded(source, scale, folder, gzip, threads, progress, encoding)
        logger.info("scale %s: %d chunks written to %s", scale.key, n, folder)
    _write_file(os.path.join(out_folder, "info"), json.dumps(info, indent=1).encode("utf-8"))
    return info


def count_chunks(source: PrecomputedVolume) -> int:
    """Number of chunks present in every scale (for progress bars)."""
    return sum(len(scale.directory) for scale in source.scales)
