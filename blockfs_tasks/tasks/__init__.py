"""The Luigi tasks of blockfs_tasks.

Run them from the command line, e.g.::

    luigi --module blockfs_tasks.tasks BuildDirectory \\
        --source '/data/scan/img_*.tiff' --dest /data/vol.blockfs --local-scheduler

Importing this module imports luigi and puts the package's defaults
(``defaults.cfg``: ``[retcode]``, log level, ``[resources]``, one section per
config class) under luigi's config files, wherever the command runs (see
:mod:`.defaults`). Importing ``blockfs_tasks`` or ``blockfs_tasks.core`` does
neither.
"""

from .config import blockfs, export, ingest
from .defaults import install_defaults
from .export import (
    ExistingVolume,
    ExportHdf5,
    ExportHdf5Slab,
    ExportJp2k,
    ExportJp2kSlab,
    ExportTiff,
    ExportTiffSlab,
)
from .interrupt import install_interrupt_handling
from .ingest import BlockBatchTask, BuildDirectory, BuildVolume, WriteBlockBatch
from .references import ExportReferences
from .pyramid import BuildLevel, Downsample, DownsampleBatch, PlaceLevel0, pyramid
from .targets import BatchTarget

__all__ = [
    "BatchTarget",
    "BlockBatchTask",
    "BuildDirectory",
    "BuildLevel",
    "BuildVolume",
    "Downsample",
    "DownsampleBatch",
    "ExistingVolume",
    "ExportHdf5",
    "ExportHdf5Slab",
    "ExportJp2k",
    "ExportJp2kSlab",
    "ExportReferences",
    "ExportTiff",
    "ExportTiffSlab",
    "PlaceLevel0",
    "WriteBlockBatch",
    "blockfs",
    "export",
    "ingest",
    "pyramid",
]

# The submodules .export and .ingest share their names with the config classes: bind the classes last.
from .config import export, ingest  # noqa: E402, F811

install_defaults()  # on import, so before luigi's command line reads [retcode] and [core] log_level
install_interrupt_handling()  # Ctrl-C: one 'rerun to resume' line instead of a traceback per process
