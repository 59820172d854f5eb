"""The Luigi tasks of blockfs_tasks.

Run them from the command line, e.g.::

    luigi --module blockfs_tasks.tasks BuildDirectory \\
        --source '/data/scan/img_*.tiff' --dest /data/vol.blockfs --local-scheduler

Importing this module imports luigi; importing ``blockfs_tasks`` or
``blockfs_tasks.core`` does not.
"""

from .config import blockfs, export, ingest
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
from .targets import BatchTarget

__all__ = [
    "BatchTarget",
    "BlockBatchTask",
    "BuildDirectory",
    "BuildVolume",
    "ExistingVolume",
    "ExportHdf5",
    "ExportHdf5Slab",
    "ExportJp2k",
    "ExportJp2kSlab",
    "ExportTiff",
    "ExportTiffSlab",
    "WriteBlockBatch",
    "blockfs",
    "export",
    "ingest",
]
