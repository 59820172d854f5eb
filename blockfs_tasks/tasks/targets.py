"""Luigi targets over the pipeline's checkpoints, which refuse files they did not make.

A target that exists but holds something else than the plan would write (a
folder, an unrelated file, a volume of another block size, dtype, codec or
extent, planes of another shape, a pyramid of other parameters) is never
taken as done: ``exists()`` raises :class:`OutputExistsError` naming the path
and what differs. Luigi reports an exception in ``complete()`` as a
scheduling failure, so the run exits non-zero (``[retcode] scheduling_error``)
and writes nothing. Each check is a stat and one small read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import luigi
import numpy as np

from ..core.batch import batch_complete
from ..core.errors import BlockfsError, MissingFileError, OutputExistsError
from ..core.format import VolumeSpec, read_spec
from ..core.naming import fragment_name
from ..ingest.errors import SourceError

logger = logging.getLogger(__name__)


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


def spec_differences(have: VolumeSpec, want: VolumeSpec) -> list[str]:
    """What differs between an existing volume's spec and the planned one, in words (XYZ order)."""
    fields = [
        ("extent [x, y, z]", list(have.grid.extent_xyz), list(want.grid.extent_xyz)),
        ("block size [x, y, z]", list(have.grid.block_xyz), list(want.grid.block_xyz)),
        ("dtype", have.dtype.name, want.dtype.name),
        ("compression", have.codec.compression, want.codec.compression),
        ("compression level", have.codec.level, want.codec.level),
        ("shuffle", have.codec.shuffle, want.codec.shuffle),
        ("loss bound", have.codec.loss, want.codec.loss),  # BitRound's keepbits
    ]
    return [f"{name} {a} (planned {b})" for name, a, b in fields if a != b]


class VolumeTarget(luigi.LocalTarget):
    """A volume's directory file; it exists only as a blockfs volume of the planned spec.

    ``planned`` gives the spec the task would write (None: any blockfs volume
    will do). If the plan cannot be made because the source is gone (its raw
    data deleted after ingest), a finished volume is trusted as it is.
    """

    def __init__(
        self, path: str | os.PathLike[str], planned: Callable[[], VolumeSpec | None] = lambda: None
    ) -> None:
        super().__init__(os.path.abspath(path))
        self.planned = planned

    def exists(self) -> bool:
        path = self.path
        if not os.path.lexists(path):
            return False
        if os.path.isdir(path):
            raise OutputExistsError(
                f"{path} is a folder: name the volume's directory file to write, e.g. "
                f"{os.path.join(path, 'volume.blockfs')}"
            )
        try:
            have = read_spec(path)
        except (BlockfsError, OSError) as e:
            raise OutputExistsError(
                f"{path} exists and is not a blockfs volume ({e}); remove it or choose another destination"
            ) from e
        try:
            want = self.planned()
        except (SourceError, MissingFileError) as e:
            logger.warning("%s: taken as done; cannot check it against its plan (%s)", path, e)
            return True
        if want is None:
            return True
        differences = spec_differences(have, want)
        if differences:
            raise OutputExistsError(
                f"{path} exists but is another volume than planned: {'; '.join(differences)}. "
                "Remove it (and its block files) to rebuild, or run with the options it was made with"
            )
        return True


def plane_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an exported plane file (TIFF or JPEG 2000), from its header only."""
    if path.lower().endswith((".jp2", ".j2k", ".jpx", ".jpf")):
        from ..export.jp2k import load_glymur

        jp2 = load_glymur().Jp2k(path)
        return tuple(jp2.shape), np.dtype(jp2.dtype)
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages.first
        return tuple(page.shape), np.dtype(page.dtype)


class PlaneFilesTarget(luigi.Target):
    """The plane files ``[z0, z1)`` of a per-plane export; done when all exist and are planes of the volume.

    ``exists()`` stats every plane and reads the header of the first and the
    last: a file of another shape or dtype (an export of another volume under
    the same pattern, an unrelated file) raises instead of counting as done.
    """

    def __init__(self, paths: Sequence[str], volume: str) -> None:
        self.paths, self.volume = list(paths), volume

    def exists(self) -> bool:
        if not all(os.path.exists(p) for p in self.paths):
            return False
        spec = read_spec(self.volume)
        ex, ey, _ = spec.grid.extent_xyz
        for path in dict.fromkeys([self.paths[0], self.paths[-1]]):
            try:
                shape, dtype = plane_header(path)
            except Exception as e:  # any unreadable file: not ours
                raise OutputExistsError(
                    f"{path} exists but is not a readable plane ({e}); remove it to export this plane"
                ) from e
            if shape != (ey, ex) or dtype.newbyteorder("=") != spec.dtype.newbyteorder("="):
                raise OutputExistsError(
                    f"{path} exists but is not a plane of {self.volume}: shape (y, x) {shape}, dtype {dtype} "
                    f"(the volume's planes are {(ey, ex)}, {spec.dtype.name}); remove the old files or "
                    "choose another output pattern"
                )
        return True


class PyramidInfoTarget(luigi.LocalTarget):
    """A pyramid's ``info`` file; it exists only if it describes the planned pyramid.

    ``planned`` gives the info the plan would write; if level 0 is gone the
    finished pyramid (which holds its own link to it) is trusted as it is.
    """

    def __init__(self, path: str, planned: Callable[[], dict[str, Any]]) -> None:
        super().__init__(os.path.abspath(path))
        self.planned = planned

    def exists(self) -> bool:
        path = self.path
        if not os.path.exists(path):
            return False
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise OutputExistsError(f"{path} exists and is not a pyramid info file ({e})") from e
        return check_pyramid_info(path, raw, self.planned)


def check_pyramid_info(path: str, raw: bytes, planned: Callable[[], dict[str, Any]]) -> bool:
    """True if the existing info ``raw`` (of file or object ``path``) is the planned one; else raise."""
    try:
        have = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputExistsError(f"{path} exists and is not a pyramid info file ({e})") from e
    try:
        want = json.loads(json.dumps(planned()))
    except MissingFileError as e:
        logger.warning("%s: taken as done; cannot check it against its plan (%s)", path, e)
        return True
    if have != want:
        keys = []
        if isinstance(have, dict):
            keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise OutputExistsError(
            f"{path} exists but describes another pyramid than planned (differs in: "
            f"{', '.join(keys) or 'everything'}); remove the pyramid folder to rebuild it"
        )
    return True
