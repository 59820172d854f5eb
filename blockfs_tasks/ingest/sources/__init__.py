"""Ingest sources: read (z, y, x) slabs of a 3D volume from files on disk.

A source is named by one string; :func:`open_source` infers its kind::

    /data/scan/img_*.tiff          tiff-stack  glob of 2D TIFF planes, one per z
    /data/scan/                    tiff-stack  a folder: every *.tif / *.tiff in it
    /data/volume.tif               tiff-3d     one 3D TIFF: multi-page, one 3D page,
                                               or a one-channel ImageJ hyperstack
    /data/volume.h5:/group/dset    hdf5        a dataset of an HDF5 file
    /data/volume.h5                hdf5        the only 3D dataset in the file
    /data/volume.zarr              zarr        a zarr v2 or v3 array
    /data/volume.zarr:path/to/arr  zarr        an array inside a zarr group
    /data/volume.npy               npy         a 3D .npy file
    synthetic:ZxYxX[:dtype][:seed=N]
                                   synthetic   blockfs_tasks.ingest.synthetic.SyntheticVolume,
                                               e.g. synthetic:512x1024x1024:uint16:seed=3

Rules, in the order they are applied:

* ``synthetic:`` first; then an existing folder (a zarr store if its name ends
  in ``.zarr`` or it holds ``zarr.json`` / ``.zarray`` / ``.zgroup``, otherwise a
  folder of TIFF planes); then an existing file, by extension (``.tif``,
  ``.tiff``, ``.h5``, ``.hdf5``, ``.hdf``, ``.npy``); then ``file.h5:key`` or
  ``store.zarr:key``; then a glob (any of ``*``, ``?``, ``[``) of TIFF planes.
  ``~`` is expanded.
* Planes of a stack are taken in natural sort order (``img_2`` before
  ``img_10``). The first plane gives the (y, x) shape and the dtype; every
  plane read later is checked against it.
* Without ``:key``, an HDF5 file or zarr group must hold exactly one 3D
  dataset / array.
* An array is 3D after dropping leading axes of length 1, so a
  ``(1, 1, z, y, x)`` OME-Zarr level is accepted. Every extent must be
  positive and the dtype one blockfs stores: (u)int8-64, float32, float64.

Every source has ``kind``, ``path``, ``shape`` (z, y, x) and ``dtype``
(native byte order), ``describe()``, ``read(z0, z1, y0, y1)`` returning the
C-contiguous ``(z1 - z0, y1 - y0, x)`` array of planes ``[z0, z1)`` and rows
``[y0, y1)``, and ``close()`` (also a context manager; a later ``read``
reopens). Reads touch only what they return: TIFF strips or tiles covering
the rows, HDF5 / zarr / memory-mapped ``.npy`` slices; memory is bounded by
the request, never by the volume. Sources pickle without their open file
handles and reopen lazily (also after a fork), so Luigi workers can receive
them. Every bad input raises :class:`~blockfs_tasks.ingest.errors.SourceError`
naming the file and the problem.

The package holds one module per job: :mod:`.base` (the :class:`Source` base
class and shared checks), :mod:`.tiff` (``tiff-stack`` and ``tiff-3d``;
:mod:`.tiff_headers` knows a plane with the header of one already parsed),
:mod:`.hdf5`, :mod:`.zarr_array` (``zarr``), :mod:`.npy` and :mod:`.synthetic`;
this module parses source strings (:func:`open_source`) and checks declared
extents (:func:`check_extent`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from ...core.checks import check_int
from ..errors import SourceError
from .base import Source, extension
from .hdf5 import HDF5_EXTS, HDF5_KEY, HDF5Source
from .npy import NpySource
from .synthetic import SYNTHETIC_PREFIX, SyntheticSource, parse_synthetic
from .tiff import TIFF_EXTS, Tiff3DSource, TiffStackSource
from .zarr_array import ZARR_KEY, ZarrSource, is_zarr_dir

__all__ = [
    "ACCEPTED_FORMS",
    "KINDS",
    "HDF5Source",
    "NpySource",
    "Source",
    "SourceError",
    "SyntheticSource",
    "Tiff3DSource",
    "TiffStackSource",
    "ZarrSource",
    "check_extent",
    "open_source",
]

#: The kinds of source, as ``Source.kind`` spells them.
KINDS: tuple[str, ...] = ("tiff-stack", "tiff-3d", "hdf5", "zarr", "npy", "synthetic")

#: The accepted source strings, for error messages and the README.
ACCEPTED_FORMS = (
    "a glob of 2D TIFF planes ('/data/img_*.tif') or a folder of *.tif/*.tiff; "
    "a 3D TIFF file ('/data/volume.tif'); "
    "an HDF5 dataset ('/data/volume.h5:/group/dataset', also .hdf5/.hdf); "
    "a zarr array ('/data/volume.zarr' or '/data/group.zarr:path/to/array'); "
    "a 3D .npy file ('/data/volume.npy'); "
    "'synthetic:ZxYxX[:dtype][:seed=N]' (e.g. 'synthetic:64x256x256:uint16:seed=3')"
)


def open_source(spec: str | os.PathLike[str] | Source) -> Source:
    """Open the source named by ``spec``; see the module docstring for the forms.

    Parameters
    ----------
    spec
        A source string or path; an already open :class:`Source` is returned as is.

    Raises
    ------
    SourceError
        If ``spec`` names no accepted form, or the data behind it is missing,
        unreadable, not 3D, empty, or of a dtype blockfs cannot store.
    """
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise SourceError(
            f"Expected a source string or path. Got {type(spec).__name__} {spec!r} instead."
        )
    text = os.fspath(spec)
    if not text.strip():
        raise SourceError(f"empty source string; accepted forms: {ACCEPTED_FORMS}")
    if text.lower().startswith(SYNTHETIC_PREFIX):
        return parse_synthetic(text)
    path = os.path.expanduser(text)
    ext = extension(path)

    if os.path.isdir(path):
        if is_zarr_dir(path):
            return ZarrSource(path.rstrip("/" + os.sep) or path)
        return TiffStackSource(path)
    if os.path.isfile(path):
        if ext in TIFF_EXTS:
            return Tiff3DSource(path)
        if ext in HDF5_EXTS:
            return HDF5Source(path)
        if ext == ".npy":
            return NpySource(path)
        raise SourceError(
            f"{path}: unknown kind of file (extension {ext or 'none'!r}); "
            f"accepted forms: {ACCEPTED_FORMS}"
        )
    m = HDF5_KEY.match(path)
    if m:
        return HDF5Source(m["path"], m["key"] or None)
    m = ZARR_KEY.match(path)
    if m:
        return ZarrSource(m["path"], m["key"] or None)
    if glob.has_magic(path):
        return TiffStackSource(path)
    if ext in (*TIFF_EXTS, *HDF5_EXTS, ".npy", ".zarr"):
        raise SourceError(f"{path}: no such file")
    raise SourceError(
        f"{text!r}: no such file, and not a source string; accepted forms: {ACCEPTED_FORMS}"
    )


def check_extent(src: Source, expected_shape_zyx: Sequence[int | None]) -> None:
    """Raise SourceError if ``src`` disagrees with extents the user declared.

    Parameters
    ----------
    src
        An open source.
    expected_shape_zyx
        Declared ``(z, y, x)`` extents; ``None`` leaves an axis unchecked.
    """
    if isinstance(expected_shape_zyx, (str, bytes)) or len(expected_shape_zyx) != 3:
        raise SourceError(
            f"Expected declared extents (z, y, x) of length 3. Got {expected_shape_zyx!r} instead."
        )
    expected = tuple(
        None if n is None else check_int(n, f"the declared extent {axis}", error=SourceError)
        for axis, n in zip("zyx", expected_shape_zyx, strict=True)
    )
    bad = [
        f"{axis} = {have} (declared {want})"
        for axis, have, want in zip("zyx", src.shape, expected, strict=True)
        if want is not None and have != want
    ]
    if bad:
        raise SourceError(
            f"{src.path}: extents disagree with the declared (z, y, x) = {expected}: "
            f"the source has {', '.join(bad)}"
        )
