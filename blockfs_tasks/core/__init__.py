"""The blockfs filesystem core: format, Directory, block files, codecs, grid.

Plain Python, numpy and numcodecs; it never imports luigi, so it can be used
alone::

    from blockfs_tasks.core import Directory
"""

from .codec import BlockCodec, Compression
from .directory import Directory
from .errors import (
    BlockDTypeError,
    BlockfsError,
    BlockShapeError,
    ChecksumError,
    ConfigurationError,
    FormatError,
    MissingFileError,
    OutOfBoundsError,
    ReadOnlyError,
    TruncatedFileError,
    UnsupportedVersionError,
    VolumeBusyError,
    VolumeInUseError,
    WriteFailedError,
    WriterDiedError,
)
from .format import VolumeSpec
from .grid import XYZ, ZYX, BlockGrid

__all__ = [
    "BlockCodec",
    "BlockDTypeError",
    "BlockGrid",
    "BlockShapeError",
    "BlockfsError",
    "ChecksumError",
    "Compression",
    "ConfigurationError",
    "Directory",
    "FormatError",
    "MissingFileError",
    "OutOfBoundsError",
    "ReadOnlyError",
    "TruncatedFileError",
    "UnsupportedVersionError",
    "VolumeBusyError",
    "VolumeInUseError",
    "VolumeSpec",
    "WriteFailedError",
    "WriterDiedError",
    "XYZ",
    "ZYX",
]
