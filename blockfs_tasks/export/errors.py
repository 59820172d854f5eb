"""The export layer's errors, in the package's one tree rooted at :class:`~blockfs_tasks.core.errors.BlockfsError`.

Errors every layer meets stay in :mod:`blockfs_tasks.core.errors`:
``DestinationError`` (an output that cannot be created; also raised by
``blockfs-upgrade``), ``OutputExistsError`` (also raised by the Luigi targets of
volumes and pyramids) and ``MissingLibraryError``.
"""

from __future__ import annotations

from ..core.errors import BlockfsError

__all__ = ["DatasetMismatchError", "RemoteRankError", "UnsupportedDTypeError"]


class DatasetMismatchError(BlockfsError, ValueError):
    """An existing destination dataset whose shape, dtype, chunks or filters differ from the export's."""


class RemoteRankError(BlockfsError, RuntimeError):
    """Another MPI rank of the same run failed; its message is included."""


class UnsupportedDTypeError(BlockfsError, TypeError):
    """A voxel dtype that an output format cannot hold without loss."""
