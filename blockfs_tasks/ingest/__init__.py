"""The ingest layer: read a source volume and cut it into blockfs blocks, without luigi.

Like :mod:`blockfs_tasks.export`, plain functions over the core:

* :mod:`.sources` — one module per kind of source (TIFF stack or 3D TIFF,
  HDF5, zarr, ``.npy``, synthetic); :func:`open_source` names one by a string.
* :mod:`.planning` — the pure batch planner (:func:`plan_batches`).
* :mod:`.synthetic` — the deterministic synthetic light-sheet volume.
* :mod:`.errors` — :class:`SourceError`.

The Luigi tasks of :mod:`blockfs_tasks.tasks.ingest` only name inputs and
targets around these functions.
"""

from .errors import SourceError
from .planning import BatchPlan, Unit, blocks_of_unit, plan_batches
from .sources import ACCEPTED_FORMS, KINDS, Source, check_extent, open_source
from .synthetic import SyntheticVolume

__all__ = [
    "ACCEPTED_FORMS",
    "KINDS",
    "BatchPlan",
    "Source",
    "SourceError",
    "SyntheticVolume",
    "Unit",
    "blocks_of_unit",
    "check_extent",
    "open_source",
    "plan_batches",
]
