"""Luigi targets over the core's checkpoints: a committed batch fragment."""

from __future__ import annotations

from typing import Any

import luigi

from ..core.batch import batch_complete
from ..core.blockfile import fragment_name
from ..core.format import VolumeSpec


class BatchTarget(luigi.Target):
    """Batch ``number`` of a volume, complete once its fragment is published.

    ``exists()`` is one stat and one small read: it also checks that the
    fragment was written for this volume spec and this batch's extent, so a
    changed plan reruns the batch instead of trusting an old file.
    """

    def __init__(self, directory_path: str, number: int, spec: VolumeSpec, batch: dict[str, Any] | None) -> None:
        self.directory_path = directory_path
        self.number = number
        self.spec = spec
        self.batch = batch
        self.path = fragment_name(directory_path, number)

    def exists(self) -> bool:
        return batch_complete(self.directory_path, self.number, self.spec, self.batch)
