"""The ingest layer's errors, in the package's one tree rooted at :class:`~blockfs_tasks.core.errors.BlockfsError`."""

from __future__ import annotations

from ..core.errors import BlockfsError


class SourceError(BlockfsError, ValueError):
    """An ingest source that cannot be read as a 3D volume.

    Raised for a string that names no known kind of source, a missing or empty
    file or glob, a corrupt or truncated file, a plane that disagrees with the
    rest of its stack, a non-3D array, an unsupported dtype, or a read outside
    the source. The message names the file and the problem.
    """
