"""Luigi over volumes in an object store: ``--dest s3://bucket/path/vol.blockfs``.

Each batch is written into a local staging folder, then uploaded (block
file, then fragment: :mod:`blockfs_tasks.core.remote_batch`); its target
exists once the fragment object exists, which an object store shows only
when its upload is complete. The volume's target is the directory object,
written last. Credentials and endpoints come from the environment as for any
fsspec client (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``FSSPEC_S3_*``,
``GOOGLE_APPLICATION_CREDENTIALS``...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import luigi
import numpy as np

from ..core.bytesource import is_remote, open_source
from ..core.errors import BlockfsError, OutputExistsError
from ..core.format import VolumeSpec, read_spec
from ..core.objects import ObjectStore
from ..core.remote_batch import build_remote_directory, publish_batch, remote_batch_complete, staging_path
from ..ingest.write import write_batch_blocks

logger = logging.getLogger(__name__)


class VolumeParameter(luigi.PathParameter):
    """A volume's directory file: a local path (as ``luigi.PathParameter``) or an object store URL, kept as is."""

    def normalize(self, x: Any) -> Any:
        if isinstance(x, str) and is_remote(x):
            return x
        return super().normalize(x)


def local_or_url(dest: Any) -> str:
    """The absolute local path of ``dest``, or ``dest`` itself for a URL."""
    text = os.fspath(dest)
    return text if is_remote(text) else os.path.abspath(text)


class RemoteBatchTarget(luigi.Target):
    """Batch ``number`` of a remote volume: complete once its fragment object exists, for this spec and batch."""

    def __init__(self, url: str, number: int, spec: VolumeSpec, batch: dict[str, Any] | None) -> None:
        self.url, self.number, self.spec, self.batch = url, number, spec, batch

    def exists(self) -> bool:
        return remote_batch_complete(self.url, self.number, ObjectStore.for_url(self.url), self.spec, self.batch)


class RemoteVolumeTarget(luigi.Target):
    """A remote volume's directory object; it exists only as a blockfs volume of the planned spec."""

    def __init__(self, url: str, planned: Callable[[], VolumeSpec | None]) -> None:
        self.url, self.planned = url, planned

    def exists(self) -> bool:
        from .targets import spec_differences

        if not ObjectStore.for_url(self.url).exists(self.url):
            return False
        try:
            have = read_spec(self.url, source=open_source(self.url))
        except (BlockfsError, OSError) as e:
            raise OutputExistsError(f"{self.url} exists and is not a blockfs volume ({e})") from e
        want = self.planned()
        differences = spec_differences(have, want) if want is not None else []
        if differences:
            raise OutputExistsError(f"{self.url} exists but is another volume than planned: {'; '.join(differences)}")
        return True


class RemotePyramidInfoTarget(luigi.Target):
    """A pyramid's ``info`` object (written last); it exists only if it describes the planned pyramid."""

    def __init__(self, url: str, planned: Callable[[], dict[str, Any]]) -> None:
        self.url, self.planned = url, planned

    def exists(self) -> bool:
        from .targets import check_pyramid_info

        store = ObjectStore.for_url(self.url)
        return store.exists(self.url) and check_pyramid_info(self.url, store.cat(self.url), self.planned)


def batch_path(dest: str) -> str:
    """Where a batch of the volume ``dest`` is written: ``dest`` itself, or its staging path for a URL."""
    return staging_path(dest) if is_remote(dest) else dest


def publish_if_remote(dest: str, number: int) -> None:
    """Upload batch ``number`` of a remote volume from its staging folder (block, then fragment); locally nothing."""
    if is_remote(dest):
        publish_batch(staging_path(dest), dest, number, ObjectStore.for_url(dest))


def write_remote_batch(
    url: str,
    spec: VolumeSpec,
    number: int,
    blocks: Iterable[tuple[np.ndarray, int, int, int]],
    extent: dict[str, Any] | None,
    n_threads: int,
) -> int:
    """Write batch ``number`` into the staging folder, then upload it (block object, then fragment)."""
    staged = staging_path(url)
    n = write_batch_blocks(staged, spec, number, blocks, extent, n_threads)
    publish_batch(staged, url, number, ObjectStore.for_url(url))
    return n


def build_remote_volume(url: str, spec: VolumeSpec, numbers: list[int], progress: Callable[[int], None]) -> int:
    """Merge the fragment objects and write the directory object last."""
    return build_remote_directory(url, spec, numbers, ObjectStore.for_url(url), progress)
