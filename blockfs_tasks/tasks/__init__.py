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

from . import config
from .config import blockfs
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
from .ingest import BlockBatchTask, BuildDirectory, BuildVolume, WriteBlockBatch
from .interrupt import install_interrupt_handling
from .pyramid import BuildLevel, Downsample, DownsampleBatch, PlaceLevel0, pyramid
from .references import ExportReferences
from .targets import BatchTarget
from .versions import CommitVolume

__all__ = [
    "BatchTarget",
    "BlockBatchTask",
    "BuildDirectory",
    "BuildLevel",
    "BuildVolume",
    "CommitVolume",
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

# The submodules .export and .ingest share their names with the config classes, and importing a
# submodule binds its name in this package: bind the classes last.
export = config.export
ingest = config.ingest

install_defaults()  # on import, so before luigi's command line reads [retcode] and [core] log_level
install_interrupt_handling()  # Ctrl-C: one 'rerun to resume' line instead of a traceback per process
