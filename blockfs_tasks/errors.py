"""Every error class of blockfs_tasks, in one public place: ``except blockfs_tasks.errors.X``.

One tree rooted at :class:`BlockfsError`; each class also derives from the
built-in exception a caller would naturally catch (``ValueError``,
``FileNotFoundError``...). Each layer defines its own classes (``core``,
``ingest``, ``export``); this module only re-exports them.
"""

from __future__ import annotations

from .core.errors import (
    BadRequestError,
    BlockDTypeError,
    BlockfsError,
    BlockShapeError,
    ChecksumError,
    ConfigurationError,
    CorruptIndexError,
    DestinationError,
    DirtyVolumeError,
    FormatError,
    MissingDependencyError,
    MissingFileError,
    MissingLibraryError,
    OutOfBoundsError,
    OutputExistsError,
    PunchHoleUnsupportedError,
    ReadOnlyError,
    RefError,
    RemoteReadError,
    TruncatedFileError,
    UnsupportedCodecError,
    UnsupportedVersionError,
    VersionConflictError,
    VolumeBusyError,
    VolumeExistsError,
    VolumeHasVersionsError,
    VolumeInUseError,
    WriteFailedError,
    WriterDiedError,
)
from .export.errors import (
    DatasetMismatchError,
    RemoteRankError,
    UnsupportedDTypeError,
)
from .ingest.errors import (
    SourceError,
)

__all__ = [
    "BadRequestError",
    "BlockDTypeError",
    "BlockShapeError",
    "BlockfsError",
    "ChecksumError",
    "ConfigurationError",
    "CorruptIndexError",
    "DatasetMismatchError",
    "DestinationError",
    "DirtyVolumeError",
    "FormatError",
    "MissingDependencyError",
    "MissingFileError",
    "MissingLibraryError",
    "OutOfBoundsError",
    "OutputExistsError",
    "PunchHoleUnsupportedError",
    "ReadOnlyError",
    "RefError",
    "RemoteRankError",
    "RemoteReadError",
    "SourceError",
    "TruncatedFileError",
    "UnsupportedCodecError",
    "UnsupportedDTypeError",
    "UnsupportedVersionError",
    "VersionConflictError",
    "VolumeHasVersionsError",
    "VolumeBusyError",
    "VolumeExistsError",
    "VolumeInUseError",
    "WriteFailedError",
    "WriterDiedError",
]
