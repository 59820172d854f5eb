"""The exception tree of blockfs_tasks.

Every error raised on purpose derives from :class:`BlockfsError` and from the
built-in exception a caller would naturally catch (``ValueError``,
``IndexError``, ``FileNotFoundError``...), so ``except ValueError`` keeps working
for code that does not know about this package.
"""

from __future__ import annotations


class BlockfsError(Exception):
    """Base for every error raised on purpose."""


class FormatError(BlockfsError, ValueError):
    """A file that is not blockfs, or a malformed or truncated one."""


class UnsupportedVersionError(FormatError):
    """A directory file of a format version this reader does not know."""


class BlockShapeError(BlockfsError, ValueError):
    """A block whose shape does not match its place in the volume."""


class BlockDTypeError(BlockfsError, TypeError):
    """A block whose dtype cannot be stored in the volume without loss."""


class OutOfBoundsError(BlockfsError, IndexError):
    """Coordinates outside the volume or off the block grid."""


class ReadOnlyError(BlockfsError, PermissionError):
    """A write to a volume opened read-only, or already closed."""


class MissingFileError(BlockfsError, FileNotFoundError):
    """A directory, block or fragment file that should exist does not."""


class VolumeExistsError(BlockfsError, FileExistsError):
    """A destination that already holds a file of the volume being written."""


class VolumeBusyError(BlockfsError, RuntimeError):
    """A volume with uncommitted writes, which an operation on the whole volume would lose."""


class TruncatedFileError(FormatError):
    """A file shorter than its index says it is."""


class ChecksumError(BlockfsError, ValueError):
    """Stored bytes whose checksum does not match the index."""


class WriterDiedError(BlockfsError, RuntimeError):
    """A writer stopped in the middle of a block: that block was not committed."""


class ConfigurationError(BlockfsError, ValueError):
    """An invalid parameter: codec, level, block size, extent, dtype."""


class DestinationError(BlockfsError, OSError):
    """An export destination that cannot be created, opened or written."""


class OutputExistsError(BlockfsError, FileExistsError):
    """An export destination that already holds a file the export would write."""


class MissingLibraryError(BlockfsError, ImportError):
    """An optional library, or a shared library it loads, that is not installed."""


class VolumeInUseError(VolumeBusyError):
    """Another writing session (``create()`` or ``open(path, "r+")``) holds the volume.

    The message names that session: host, process id and since when.
    """


class WriteFailedError(BlockfsError, OSError):
    """A write or fsync of a volume's file failed: the message says what was being written.

    Built like ``OSError(errno, message, filename)``, so ``errno`` (ENOSPC,
    EIO...) and ``filename`` are kept.
    """


class UnsupportedCodecError(FormatError):
    """A volume whose codec id (or a parameter of it) this reader does not know; the message names it."""


class CorruptIndexError(FormatError, ChecksumError):
    """A directory, fragment or journal whose header, metadata or an index page does not match its CRC-32C."""


class BadRequestError(BlockfsError, ValueError):
    """A request no valid answer exists for, e.g. a chunk coordinate too long to be one (HTTP 400)."""


class MissingDependencyError(MissingLibraryError):
    """An optional Python package that is not installed; the message names the pip extra to install."""


class RemoteReadError(BlockfsError, OSError):
    """A remote volume (s3://, gs://, http(s)://) whose object could not be read: the message names URL and range."""


class VersionConflictError(BlockfsError, RuntimeError):
    """A commit whose changed blocks overlap those of a commit that got onto the branch first.

    The message names the block positions (x, y, z origins) both changed.
    """


class RefError(BlockfsError, LookupError):
    """A tag, branch or commit id that does not exist, is ambiguous, or already exists."""


class DirtyVolumeError(VolumeBusyError):
    """A checkout that would drop uncommitted blocks of the working volume."""


class PunchHoleUnsupportedError(BlockfsError, OSError):
    """A filesystem that cannot punch holes in a file (``fallocate`` PUNCH_HOLE), so compaction cannot reclaim."""


class VolumeHasVersionsError(BlockfsError, FileExistsError):
    """Replacing a volume, or one of its block files, whose commits (versions) still use those files.

    The message names the volume and what to do: delete its versions first, or write elsewhere.
    """
