"""The ingest layer: read a source volume and cut it into blockfs blocks, without luigi.

Like :mod:`blockfs_tasks.export`, plain functions over the core:

* :mod:`.sources` — one module per kind of source (TIFF stack or 3D TIFF,
  HDF5, zarr, ``.npy``, synthetic); :func:`open_source` names one by a string.
* :mod:`.planning` — the pure planner (:func:`plan_volume`, :func:`plan_batches`).
* :mod:`.write` — :func:`write_batch`: one batch of a source into its own
  block file and fragment, through the core's batch writer.
* :mod:`.synthetic` — the deterministic synthetic light-sheet volume.
* :mod:`.errors` — :class:`SourceError`.

See :mod:`.write` for a whole ingest in a few lines; the Luigi tasks of
:mod:`blockfs_tasks.tasks.ingest` only name inputs and targets around these
functions.
"""

from .errors import SourceError
from .planning import BatchPlan, Unit, blocks_of_unit, plan_batches, plan_volume
from .sources import ACCEPTED_FORMS, KINDS, Source, check_extent, open_source
from .synthetic import SyntheticVolume
from .write import batch_blocks, check_source, write_batch, write_batch_blocks

__all__ = [
    "ACCEPTED_FORMS",
    "KINDS",
    "BatchPlan",
    "Source",
    "SourceError",
    "SyntheticVolume",
    "Unit",
    "batch_blocks",
    "blocks_of_unit",
    "check_extent",
    "check_source",
    "open_source",
    "plan_batches",
    "plan_volume",
    "write_batch",
    "write_batch_blocks",
]
