"""Chunk encodings of a static precomputed export: raw, and CloudVolume's fpzip and kempressed.

``raw`` is what Neuroglancer and tensorstore read (and what ``blockfs-serve``
always sends, whatever the stored codec). ``fpzip`` and ``kempressed`` are
CloudVolume encodings for float volumes; stock Neuroglancer and tensorstore
cannot read them.

fpzip
    A volume stored with the ``fpzip`` codec already holds CloudVolume fpzip
    chunks: its frames' header says (nx, ny, nz, nf) = (x, y, z, 1), the chunk
    CloudVolume's ``fpzip.decompress(order="F")`` expects, so they are copied
    (CRC-checked) without re-encoding. Any other codec is decoded and encoded.
kempressed
    Likewise for the ``kempressed`` codec (frames (x, y, 1, z), which
    CloudVolume's decoder swaps back to (x, y, z, 1)); other codecs are
    encoded, data outside [0, 1] refused. CloudVolume's own *encoder* writes
    single-channel kempressed chunks wrongly (checked with cloud-volume
    12.15.2: it compresses the swapped array without making it Fortran
    ordered, so its decoder reads other voxels), but its decoder reads these
    chunks exactly (to the codec's one machine epsilon): the export is
    checked by reading it back with cloud-volume in the tests.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.codec import Codec
from ..core.codecs.floats import FpzipCodec, KempressedCodec, check_float_dtype
from ..core.directory import Directory
from ..core.errors import ConfigurationError
from .precomputed import chunk_bytes

ENCODINGS = ("raw", "fpzip", "kempressed")
_CODECS: dict[str, Codec] = {"fpzip": FpzipCodec(), "kempressed": KempressedCodec()}


def chunk_encoder(directory: Directory, encoding: str) -> Callable[[int, int, int], bytes]:
    """``encode(x, y, z)``: the chunk bytes of the block at (x, y, z) in ``encoding``.

    ConfigurationError for an unknown encoding, or fpzip / kempressed of an
    integer volume; kempressed of a block with values outside [0, 1] raises
    when that block is encoded.
    """
    if encoding not in ENCODINGS:
        raise ConfigurationError(f"Expected an encoding in {ENCODINGS}. Got {encoding!r} instead.")
    if encoding == "raw":
        return lambda x, y, z: chunk_bytes(directory.read_block(x, y, z))
    check_float_dtype(encoding, directory.dtype)
    codec = _CODECS[encoding]
    if directory.spec.codec == codec:  # the stored frames are CloudVolume's chunks
        def copy(x: int, y: int, z: int) -> bytes:
            frame = directory.read_frame(x, y, z)
            return codec.encode(directory.read_block(x, y, z)) if frame is None else frame

        return copy
    return lambda x, y, z: codec.encode(directory.read_block(x, y, z))
