"""Where each zarr chunk of a blockfs volume is: a stored frame to hand out as it is, or an edge to pad.

A blockfs block is one Blosc1 frame, which is exactly a chunk of zarr's
``blosc`` codec, so a chunk key maps to (block file, offset, size) with one
index lookup and no decoding. The one exception: blockfs stores edge blocks
at their truncated shape while zarr decodes every chunk at the full chunk
shape, so an edge chunk is decoded and padded with zeros: on the fly into a
memcpyed Blosc frame (:func:`pad_frame_memcpy`, no encode), or re-encoded
with the volume's codec for a file kept on disk (:func:`pad_frame`).
Interior chunks are never copied.

Chunk indexes are (z, y, x) block numbers, like the arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..core.blockfile import BlockFileReader
from ..core.codec import BlockCodec, Codec, checksum
from ..core.directory import Directory
from ..core.errors import (
    ChecksumError,
    ConfigurationError,
    FormatError,
    TruncatedFileError,
)

ZYX = tuple[int, int, int]

# Blosc1 frame header: version, versionlz, flags, typesize (u8 each); flags bit 0 = byte
# shuffle, bit 2 = bit shuffle (c-blosc's BLOSC_DOSHUFFLE / BLOSC_DOBITSHUFFLE).
_FLAGS_TYPESIZE = struct.Struct("<2xBB")
#: Entries scanned at a time when listing present blocks (bounded memory on huge indexes).
LIST_SLICE = 1 << 20


@dataclass(frozen=True)
class Frame:
    """One stored block: the frame at ``offset`` (``size`` bytes) of block file ``file``.

    ``edge`` is True when the block is truncated (zarr needs it padded).
    """

    file: int  # 0-based index into LevelChunks.paths
    offset: int
    size: int
    crc32c: int
    edge: bool


def frame_settings(data: bytes) -> tuple[int, str]:
    """(typesize, shuffle) of a Blosc1 frame from its header: shuffle is "noshuffle", "shuffle" or "bitshuffle"."""
    if len(data) < 16:
        raise FormatError(f"{len(data)} bytes is too short for a Blosc frame")
    flags, typesize = _FLAGS_TYPESIZE.unpack_from(data)
    shuffle = "bitshuffle" if flags & 0x4 else "shuffle" if flags & 0x1 else "noshuffle"
    return typesize, shuffle


class LevelChunks:
    """The chunks of one volume (one pyramid level), keyed by (z, y, x) chunk number.

    Opening costs what :meth:`Directory.open` costs (a large index is
    memory-mapped); a lookup is one index entry, never a scan. Thread-safe:
    frames are read with ``pread`` on descriptors opened once (by a
    :class:`~blockfs_tasks.core.blockfile.BlockFileReader` of its own).
    """

    def __init__(self, directory: Directory, verify_checksums: bool = True) -> None:
        self.directory = directory
        self.grid = directory.grid
        self.dtype = directory.dtype
        self.shape: ZYX = directory.shape
        self.chunk_shape: ZYX = directory.grid.block_shape
        self.grid_shape: ZYX = directory.grid.grid_shape
        self.index = directory.index
        self.paths = directory.block_filenames
        # Format 1.0.0 indexes carry no checksums; later versions do.
        self.verify = verify_checksums and not str(directory.version).startswith("1.")
        # The first chunk number along each axis whose block is truncated (grid size if none).
        self._first_edge = tuple(s // c for s, c in zip(self.shape, self.chunk_shape, strict=True))
        # Only its descriptors are used (frames are checked here against the frame's CRC, not decoded).
        self._reader = BlockFileReader(self.paths, self.verify, directory.byte_source)

    def locate(self, chunk: ZYX) -> Frame | None:
        """The stored frame of a chunk, or None for a block never written (zarr's fill value)."""
        iz, iy, ix = chunk
        gz, gy, gx = self.grid_shape
        if not (0 <= iz < gz and 0 <= iy < gy and 0 <= ix < gx):
            return None
        entry = self.index[(iz * gy + iy) * gx + ix]
        file = int(entry["file"])
        if file == 0:
            return None
        edge = any(i >= f for i, f in zip(chunk, self._first_edge, strict=True))
        return Frame(file - 1, int(entry["offset"]), int(entry["size"]), int(entry["crc32c"]), edge)

    def stored_shape(self, chunk: ZYX) -> ZYX:
        """Shape (z, y, x) of the stored block of a chunk (truncated at the volume's edges)."""
        iz, iy, ix = chunk
        (cz, cy, cx), (sz, sy, sx) = self.chunk_shape, self.shape
        return min(cz, sz - iz * cz), min(cy, sy - iy * cy), min(cx, sx - ix * cx)

    def read_frame(self, frame: Frame) -> bytes:
        """The stored bytes of a frame, checked against the index's CRC-32C when the format has one."""
        path = self.paths[frame.file]
        data = self._reader.source.read(path, frame.offset, frame.size)  # pread, or one ranged GET remotely
        if len(data) != frame.size:
            raise TruncatedFileError(
                f"{path}: block file is truncated: a frame needs bytes "
                f"{frame.offset}..{frame.offset + frame.size}, "
                f"the file ends at {frame.offset + len(data)}"
            )
        if self.verify and checksum(data) != frame.crc32c:
            raise ChecksumError(f"{path}: frame at offset {frame.offset}: checksum mismatch (stored bytes are corrupt)")
        return data

    def present(self) -> Iterator[ZYX]:
        """(z, y, x) numbers of the chunks whose block was written, in position order.

        Scans the index ``LIST_SLICE`` entries at a time: memory stays bounded
        and the time is one pass over the index (a vectorised ``nonzero``).
        """
        gz, gy, gx = self.grid_shape
        n = gz * gy * gx
        for start in range(0, n, LIST_SLICE):
            positions = np.flatnonzero(np.asarray(self.index["file"][start : start + LIST_SLICE])) + start
            iz, rest = np.divmod(positions, gy * gx)
            iy, ix = np.divmod(rest, gx)
            yield from zip(iz.tolist(), iy.tolist(), ix.tolist(), strict=True)

    def close(self) -> None:
        """Close the block files' descriptors."""
        self._reader.close()


def pad_frame(data: bytes, chunks: LevelChunks, chunk: ZYX, codec: Codec) -> bytes:
    """Decode an edge block's frame, pad it with zeros to the full chunk shape, encode it with ``codec``.

    For a file kept on disk (the refs side file) ``codec`` is the volume's own:
    zeros compress to almost nothing, so a padded chunk costs about what the
    truncated block costs. On the fly the Store uses :func:`pad_frame_memcpy`.
    """
    stored = chunks.stored_shape(chunk)
    block = codec.decode(data, chunks.dtype, stored)
    padded = np.zeros(chunks.chunk_shape, chunks.dtype)
    padded[: stored[0], : stored[1], : stored[2]] = block
    try:
        return codec.encode(padded)
    except ConfigurationError:  # a compressor this installation lacks (snappy): any Blosc frame decodes
        return BlockCodec("lz4", codec.level, codec.shuffle).encode(padded)


def memcpy_header(chunks: LevelChunks) -> bytes:
    """The 16-byte header c-blosc writes for a full chunk of this level at clevel 0 ("memcpyed").

    At clevel 0 c-blosc copies the raw bytes after a header that depends only
    on the chunk's size, typesize and shuffle flag, never on the data: any
    Blosc1 decoder (numcodecs, tensorstore, Neuroglancer) reads such a frame
    with one ``memcpy``. Made once per level by encoding zeros.
    """
    zeros = np.zeros(chunks.chunk_shape, chunks.dtype)
    frame = BlockCodec("lz4", 0, chunks.directory.spec.codec.shuffle).encode(zeros)
    flags = frame[2]
    if len(frame) != zeros.nbytes + 16 or not flags & 0x2:
        raise FormatError(
            f"c-blosc wrote a {len(frame)}-byte clevel-0 frame for {zeros.nbytes} bytes, not a memcpyed one"
        )
    return bytes(frame[:16])


def pad_frame_memcpy(data: bytes, chunks: LevelChunks, chunk: ZYX, header: bytes) -> bytearray:
    """An edge block's frame padded to the full chunk shape as a memcpyed Blosc frame (``header`` + raw bytes).

    One decode, straight into the frame's buffer when only z is truncated (the
    stored block is then a C-ordered prefix of the chunk), else one copy; no
    encode. Costs the decode plus a memcpy, and the reader's decode is a memcpy
    too, where re-compressing (even lz4 level 1) costs more than the decode.
    """
    stored = chunks.stored_shape(chunk)
    shape = chunks.chunk_shape
    out = bytearray(len(header) + int(np.prod(shape)) * chunks.dtype.itemsize)  # zero-filled
    out[: len(header)] = header
    padded = np.frombuffer(out, chunks.dtype, offset=len(header)).reshape(shape)
    if stored[1:] == shape[1:]:
        BlockCodec.decode(data, chunks.dtype, stored, out=padded[: stored[0]])
    else:
        padded[: stored[0], : stored[1], : stored[2]] = BlockCodec.decode(data, chunks.dtype, stored)
    return out
