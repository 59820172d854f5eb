"""Building a pyramid in one process: a level batch by batch, then every level and the ``info``.

Both resume an interrupted run: committed batches are kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from ..core.batch import BatchWriter, batch_complete, build_directory
from ..core.blockfile import fragment_name
from ..core.directory import volume_files
from ..core.errors import FormatError, VolumeExistsError
from ..core.format import VolumeSpec, read_directory
from .layout import INFO_NAME, Pyramid, level_batches, plan_pyramid, prepare_pyramid, write_pyramid_info
from .planning import level_spec
from .reduce import downsample_batch

logger = logging.getLogger(__name__)


def build_level(
    pyramid: Pyramid,
    i: int,
    level0_spec: VolumeSpec,
    blocks_per_batch: int = 256,
    n_threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Make level ``i`` (>= 1) from level ``i - 1``, batch by batch; return blocks written.

    Committed batches of an interrupted run with the same parameters are kept.
    """
    spec = level_spec(level0_spec, pyramid.levels[i], pyramid.mode)
    path = pyramid.path(i)
    if os.path.exists(path):
        try:
            done = read_directory(path).spec
        except FormatError:
            done = None
        if done is not None and done.same_volume(spec) and done.metadata == spec.metadata:
            logger.info("%s: level already built", path)
            return 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = pyramid.open(i - 1)
    batches = level_batches(pyramid, i, blocks_per_batch)
    written = 0
    for number, origins in enumerate(batches):
        if batch_complete(path, number, spec):
            logger.debug("%s: batch %d already committed", path, number)
        else:
            with BatchWriter(path, spec, number) as writer:
                written += downsample_batch(src, spec, writer, origins, pyramid.mode, n_threads=n_threads)
        if progress is not None:
            progress(len(origins))
    build_directory(path, spec, range(len(batches)))
    for number in range(len(batches)):
        os.unlink(fragment_name(os.path.abspath(path), number))
    return written


def _remove_volume(path: str) -> None:
    """Remove a level's directory, block and fragment files, if any."""
    if not os.path.isdir(os.path.dirname(path)):
        return
    for old in [path, *volume_files(path)]:
        if os.path.exists(old):
            os.unlink(old)


def build_pyramid(
    level0_path: str,
    out_folder: str,
    resolution_nm_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    mode: str = "mean",
    max_levels: int | None = None,
    factors: Sequence[Sequence[int]] | None = None,
    level0: str = "link",
    blocks_per_batch: int = 256,
    n_threads: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Pyramid:
    """Build a whole pyramid in this process and write its ``info``; return it.

    A finished pyramid in ``out_folder`` is an error unless ``overwrite``;
    an interrupted one is resumed (committed batches are kept). ``progress``
    is called with the number of blocks of each batch done.
    """
    pyramid = plan_pyramid(level0_path, out_folder, resolution_nm_xyz, mode, max_levels, factors, level0)
    info_path = os.path.join(pyramid.folder, INFO_NAME)
    if os.path.exists(info_path):
        if not overwrite:
            raise VolumeExistsError(f"{info_path}: a pyramid already exists there; pass overwrite to replace it")
        try:
            old = Pyramid.from_info(pyramid.folder)
            old_paths = [old.path(i) for i in range(1, len(old.levels))]
        except FormatError:
            old_paths = []
        os.unlink(info_path)
        for path in {*old_paths, *(pyramid.path(i) for i in range(1, len(pyramid.levels)))}:
            inside = os.path.dirname(path).startswith(pyramid.folder + os.sep)  # never outside the pyramid
            if inside and os.path.abspath(path) != os.path.abspath(level0_path):
                _remove_volume(path)
                if os.path.isdir(os.path.dirname(path)) and not os.listdir(os.path.dirname(path)):
                    os.rmdir(os.path.dirname(path))
    prepare_pyramid(pyramid, level0_path, level0)
    level0_spec = pyramid.open(0).spec  # (a level 0 referenced by URL is read remotely)
    threads = n_threads or os.cpu_count() or 1
    for i in range(1, len(pyramid.levels)):
        n = build_level(pyramid, i, level0_spec, blocks_per_batch, threads, progress)
        logger.info("level %s: %d blocks written", pyramid.levels[i].key, n)
    write_pyramid_info(pyramid)
    return pyramid
