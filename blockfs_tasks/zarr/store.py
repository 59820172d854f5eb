"""``BlockfsStore``: a read-only ``zarr.abc.store.Store`` over a blockfs volume or pyramid.

    >>> import zarr
    >>> group = zarr.open_group(BlockfsStore("volume.blockfs"), mode="r")
    >>> group["0"][:64, :64, :64]     # level 0, (z, y, x)

Interior chunks are the stored Blosc frames, handed out as they are; edge
chunks are padded on the fly (see :mod:`.chunks`); a block never written is
absent (zarr reads its fill value, 0). Reads run in worker threads
(``asyncio.to_thread``), like zarr's own ``LocalStore``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

from .view import ZarrView


def _slice(data: bytes | bytearray, byte_range: ByteRequest | None) -> bytes | bytearray:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(len(data) - byte_range.suffix, 0) :]
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


class BlockfsStore(Store):
    """The OME-Zarr group of a blockfs volume (array ``"0"``) or pyramid (arrays ``"0"``, ``"1"``...).

    Parameters
    ----------
    path
        A ``.blockfs`` directory file or a pyramid folder.
    zarr_format
        2 (default; NGFF 0.4) or 3 (NGFF 0.5).
    resolution_nm_xyz
        Voxel size of level 0 in nm (XYZ order), if the volume does not say.
    verify_checksums
        Check each frame against the index's CRC-32C (format 2.0.0 and later).
    """

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        zarr_format: int = 2,
        resolution_nm_xyz: Sequence[float] | None = None,
        verify_checksums: bool = True,
    ) -> None:
        super().__init__(read_only=True)
        resolution = None if resolution_nm_xyz is None else tuple(resolution_nm_xyz)
        self._args = (os.fspath(path), zarr_format, resolution, verify_checksums)
        self.view = ZarrView(*self._args)

    @property
    def path(self) -> str:
        """Absolute path of the volume's directory file or pyramid folder."""
        return self.view.path

    @property
    def zarr_format(self) -> int:
        """2 or 3."""
        return self.view.zarr_format

    def __repr__(self) -> str:
        return f"BlockfsStore({self.view.path!r}, zarr_format={self.view.zarr_format})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockfsStore) and other._args[1:] == self._args[1:] and other.path == self.path

    def __hash__(self) -> int:
        return hash((self.path, self._args[1:]))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the arguments only (dask workers reopen the volume)."""
        return {"args": self._args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(*state["args"])  # type: ignore[misc]  # unpickling re-runs __init__ on the bare instance

    def with_read_only(self, read_only: bool = False) -> BlockfsStore:
        """A new store over the same volume; only ``read_only=True`` is possible."""
        if not read_only:
            raise ValueError("BlockfsStore is read-only")
        return BlockfsStore(*self._args)

    # ------------------------------------------------------------ reading
    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        """The bytes of ``key`` (a metadata document or a chunk's Blosc frame), or None if absent."""
        if not self._is_open:
            await self._open()
        doc = self.view.documents.get(key)
        data = doc if doc is not None else await asyncio.to_thread(self.view.get, key)
        if data is None:
            return None
        return prototype.buffer.from_bytes(_slice(data, byte_range))

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """``get`` of each (key, byte range), in order."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        """True for a metadata document or a chunk whose block was written."""
        return self.view.exists(key)

    async def getsize(self, key: str) -> int:
        """Size of a value in bytes (a stored frame's size without reading it)."""
        parsed = self.view.parse_chunk_key(key)
        if parsed is not None:
            frame = self.view.levels[parsed[0]].locate(parsed[1])
            if frame is not None and not frame.edge:
                return frame.size
        data = await asyncio.to_thread(self.view.get, key)
        if data is None:
            raise FileNotFoundError(key)
        return len(data)

    # ------------------------------------------------------------ listing
    async def list(self) -> AsyncIterator[str]:
        """Every key: metadata documents, then the present chunks of each level."""
        for key in self.view.all_keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Keys starting with ``prefix``."""
        for key in self.view.keys_with_prefix(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """Names of the keys and "folders" directly under ``prefix``."""
        prefix = prefix.rstrip("/")
        head = f"{prefix}/" if prefix else ""
        seen: set[str] = set()
        for key in self.view.keys_with_prefix(head):
            name = key[len(head) :].split("/", 1)[0]
            if name and name not in seen:
                seen.add(name)
                yield name

    # ------------------------------------------------------------ writing
    async def set(self, key: str, value: Buffer) -> None:
        """Refused: the store is read-only."""
        self._check_writable()

    async def delete(self, key: str) -> None:
        """Refused: the store is read-only."""
        self._check_writable()

    def close(self) -> None:
        """Close the block files."""
        self.view.close()
        super().close()
