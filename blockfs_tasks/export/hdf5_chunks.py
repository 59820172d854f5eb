"""HDF5 chunk encoding: the dataset's filter pipeline, and a block turned into the bytes HDF5 stores.

HDF5 applies its filters itself only in the process that calls ``H5Dwrite``,
one chunk at a time. Instead the exporter runs the filter pipeline in Python,
in parallel: each edge block is padded with zeros to the full chunk shape (HDF5
chunks are always full-size), byte-shuffled if the dataset has the shuffle
filter (HDF5's transposition of the bytes of each element), then compressed
into a zlib stream (what HDF5's deflate filter stores; written by libdeflate
from imagecodecs when available, 2-3x faster than zlib, else by zlib) or raw
LZF (``imagecodecs.lzf_encode``, which h5py's LZF filter decodes). A chunk that
would not shrink is stored unfiltered with that filter's bit set in the chunk's
filter mask, as HDF5 does for optional filters. The writer stores the bytes
with ``H5Dwrite_chunk`` (``dset.id.write_direct_chunk``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.checks import check_level
from ..core.errors import ConfigurationError
from ..core.optional import require

if TYPE_CHECKING:
    import h5py

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_GZIP_LEVEL",
    "FILTER_DEFLATE",
    "FILTER_LZF",
    "FILTER_SHUFFLE",
    "ChunkEncoder",
    "Hdf5Filters",
    "Pipeline",
    "dataset_pipeline",
    "describe_pipeline",
]

COMPRESSIONS = ("gzip", "lzf", "none")
DEFAULT_GZIP_LEVEL = 4

# HDF5 filter identifiers (H5Zpublic.h; 32000 is h5py's registered LZF filter).
FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_LZF = 32000
FILTER_NAMES = {FILTER_DEFLATE: "gzip", FILTER_SHUFFLE: "shuffle", FILTER_LZF: "lzf"}

#: A filter pipeline: (filter id, the parameters that matter) in HDF5's order.
Pipeline = tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Hdf5Filters:
    """The dataset's filter pipeline: compression, gzip level, byte shuffle.

    ``compression`` is "gzip", "lzf" or "none" (``None`` means "none");
    ``level`` is gzip's 0-9 (default 4) and must be ``None`` for the others.
    """

    compression: str | None = "gzip"
    level: int | None = None
    shuffle: bool = False

    def __post_init__(self) -> None:
        compression = "none" if self.compression is None else str(self.compression).lower()
        if compression not in COMPRESSIONS:
            raise ConfigurationError(
                f"Expected a compression from {COMPRESSIONS}. Got {self.compression!r} instead."
            )
        level = self.level
        if compression == "gzip":
            level = check_level(DEFAULT_GZIP_LEVEL if level is None else level, "a gzip level (compression_opts)")
        elif level is not None:
            raise ConfigurationError(
                f"Compression {compression!r} takes no compression_opts. Got {level!r} instead."
            )
        object.__setattr__(self, "compression", compression)
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "shuffle", bool(self.shuffle))

    def dataset_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``h5py.Group.create_dataset``."""
        kwargs: dict[str, Any] = {"shuffle": self.shuffle}
        if self.compression == "gzip":
            kwargs.update(compression="gzip", compression_opts=self.level)
        elif self.compression == "lzf":
            kwargs["compression"] = "lzf"
        return kwargs

    def pipeline(self) -> Pipeline:
        """(filter id, parameters that matter) in HDF5's order: shuffle, then the compressor."""
        out: list[tuple[int, tuple[int, ...]]] = []
        if self.shuffle:
            out.append((FILTER_SHUFFLE, ()))
        if self.compression == "gzip" and self.level is not None:  # gzip always has its level
            out.append((FILTER_DEFLATE, (self.level,)))
        elif self.compression == "lzf":
            out.append((FILTER_LZF, ()))
        return tuple(out)

    def describe(self) -> str:
        return describe_pipeline(self.pipeline())


def describe_pipeline(pipeline: Iterable[tuple[int, tuple[int, ...]]]) -> str:
    """A pipeline in words: "shuffle + gzip level 4", "no filters"..."""
    parts = []
    for fid, params in pipeline:
        name = FILTER_NAMES.get(fid, f"filter {fid}")
        parts.append(f"{name} level {params[0]}" if fid == FILTER_DEFLATE and params else name)
    return " + ".join(parts) or "no filters"


def dataset_pipeline(dset: h5py.Dataset) -> Pipeline:
    """The filter pipeline of an existing dataset, with the parameters that matter."""
    plist = dset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        fid, _flags, values, _name = plist.get_filter(i)
        out.append((int(fid), (int(values[0]),) if fid == FILTER_DEFLATE and values else ()))
    return tuple(out)


def deflate_function() -> Callable[[Any, int], bytes]:
    """A zlib-stream compressor: libdeflate (imagecodecs) when present, else zlib.

    Both write a standard zlib stream, which HDF5's deflate filter reads;
    libdeflate is 2-3x faster than zlib at levels 1-6 for similar sizes.
    """
    try:
        import imagecodecs

        if imagecodecs.DEFLATE.available:
            encode = imagecodecs.deflate_encode
            return lambda data, level: bytes(encode(data, level=level))
    except (ImportError, AttributeError):
        pass
    return zlib.compress


class ChunkEncoder:
    """Turn a (possibly truncated) block into the bytes HDF5 stores for its chunk.

    Pads to ``chunk_shape`` with zeros, then applies the pipeline of ``filters``
    in HDF5's order. Returns ``(bytes, filter_mask)`` for ``write_direct_chunk``:
    bit ``i`` of the mask is set when filter ``i`` was skipped because its
    output would not have been smaller (stored as HDF5 stores an optional filter
    that failed). Thread-safe: it holds no mutable state.
    """

    def __init__(self, filters: Hdf5Filters, chunk_shape: tuple[int, int, int], dtype: Any) -> None:
        self.filters = filters
        self.pipeline = filters.pipeline()
        cz, cy, cx = (int(c) for c in chunk_shape)
        self.chunk_shape = (cz, cy, cx)
        self.dtype = np.dtype(dtype)
        self._deflate = deflate_function()
        self._lzf: Callable[[Any], bytes] | None = None
        if filters.compression == "lzf":
            lzf_encode = require("imagecodecs", None, "An HDF5 export with LZF").lzf_encode
            self._lzf = lambda data: bytes(lzf_encode(data))

    def encode(self, block: np.ndarray) -> tuple[bytes, int]:
        """The stored bytes and filter mask of the chunk holding ``block`` (z, y, x)."""
        block = np.asarray(block)
        if block.shape != self.chunk_shape:
            padded = np.zeros(self.chunk_shape, self.dtype)
            padded[: block.shape[0], : block.shape[1], : block.shape[2]] = block
            block = padded
        data = np.ascontiguousarray(block, dtype=self.dtype).reshape(-1).view(np.uint8)
        mask = 0
        for i, (fid, params) in enumerate(self.pipeline):
            if fid == FILTER_SHUFFLE:
                if self.dtype.itemsize > 1:
                    data = np.ascontiguousarray(data.reshape(-1, self.dtype.itemsize).T).reshape(-1)
                continue
            if fid == FILTER_DEFLATE:
                out = self._deflate(data, params[0])
            elif self._lzf is not None:
                out = self._lzf(data)
            if len(out) < data.nbytes:
                return out, mask
            mask |= 1 << i
        return data.tobytes(), mask
