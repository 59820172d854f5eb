"""The OME-Zarr metadata of a blockfs volume or pyramid: NGFF 0.4 on zarr v2, or NGFF 0.5 on zarr v3.

The group's arrays are ``"0"``, ``"1"``... (pyramid level k; a single volume
has level ``"0"`` only), axes z, y, x, scale = voxel size in micrometres.
Chunks are blockfs blocks; the compressor is the volume's codec as zarr
names it (:mod:`.codecs`). Blosc decoders read cname/clevel/shuffle from each
frame's header, so those fields are informational; the shuffle is the
volume's, which is what its frames say.

Everything here is pure: :func:`group_documents` returns ``{key: JSON dict}``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.codec import Codec
from ..core.errors import ConfigurationError
from .codecs import codecs_v3, compressor_v2

ZARR_FORMATS = (2, 3)


@dataclass(frozen=True)
class ArrayInfo:
    """What the metadata of one level's array needs; shapes in (z, y, x) order.

    ``scale_um_zyx`` is the voxel size in micrometres, or None when unknown
    (then the scale is 1 and the axes carry no unit).
    """

    key: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    dtype: np.dtype
    codec: Codec
    scale_um_zyx: tuple[float, float, float] | None


def check_zarr_format(zarr_format: int) -> int:
    """``zarr_format`` if it is 2 or 3, else a ConfigurationError."""
    if zarr_format not in ZARR_FORMATS:
        raise ConfigurationError(f"Expected a zarr_format in {ZARR_FORMATS}. Got {zarr_format!r} instead.")
    return int(zarr_format)


def _scale(info: ArrayInfo) -> list[float]:
    return [float(v) for v in info.scale_um_zyx] if info.scale_um_zyx else [1.0, 1.0, 1.0]


def _axes(infos: Sequence[ArrayInfo]) -> list[dict[str, str]]:
    unit = {"unit": "micrometer"} if infos[0].scale_um_zyx else {}
    return [{"name": a, "type": "space", **unit} for a in "zyx"]


def multiscale(infos: Sequence[ArrayInfo], name: str, mode: str, ngff_version: str | None) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry; ``ngff_version`` goes inside it for 0.4 (None for 0.5)."""
    entry: dict[str, Any] = {}
    if ngff_version:
        entry["version"] = ngff_version
    entry.update(
        name=name,
        axes=_axes(infos),
        datasets=[
            {"path": i.key, "coordinateTransformations": [{"type": "scale", "scale": _scale(i)}]} for i in infos
        ],
    )
    if mode != "none":  # the downsampling method of a pyramid; a single volume has none
        entry["type"] = mode
    entry["metadata"] = {"source": "blockfs"}
    return entry


def zarray_v2(info: ArrayInfo) -> dict[str, Any]:
    """``.zarray`` of one level: the chunks' compressor (:mod:`.codecs`), "/" separator (NGFF 0.4), fill value 0."""
    return {
        "zarr_format": 2,
        "shape": list(info.shape),
        "chunks": list(info.chunks),
        "dtype": info.dtype.newbyteorder("<").str if info.dtype.itemsize > 1 else info.dtype.str,
        "compressor": compressor_v2(info.codec),
        "fill_value": 0.0 if info.dtype.kind == "f" else 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }


def zarr_json_v3(info: ArrayInfo) -> dict[str, Any]:
    """``zarr.json`` of one level: the chunks' codecs (:mod:`.codecs`), default "/" chunk keys."""
    codecs = codecs_v3(info.codec, info.dtype)
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(info.shape),
        "data_type": info.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(info.chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0 if info.dtype.kind == "f" else 0,
        "codecs": codecs,
        "attributes": {},
        "dimension_names": ["z", "y", "x"],
    }


def group_documents(
    infos: Sequence[ArrayInfo], name: str, mode: str, zarr_format: int = 2
) -> dict[str, dict[str, Any]]:
    """Every metadata document of the group, ``{store key: JSON dict}``.

    zarr v2: ``.zgroup``, ``.zattrs`` (NGFF 0.4), ``<k>/.zarray`` and a
    consolidated ``.zmetadata`` (one request for remote clients). zarr v3:
    ``zarr.json`` (NGFF 0.5 under ``attributes.ome``) and ``<k>/zarr.json``.
    """
    if check_zarr_format(zarr_format) == 2:
        docs: dict[str, dict[str, Any]] = {
            ".zgroup": {"zarr_format": 2},
            ".zattrs": {"multiscales": [multiscale(infos, name, mode, "0.4")]},
        }
        for i in infos:
            docs[f"{i.key}/.zarray"] = zarray_v2(i)
        docs[".zmetadata"] = {"zarr_consolidated_format": 1, "metadata": dict(docs)}
        return docs
    docs = {
        "zarr.json": {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"ome": {"version": "0.5", "multiscales": [multiscale(infos, name, mode, None)]}},
        }
    }
    for i in infos:
        docs[f"{i.key}/zarr.json"] = zarr_json_v3(i)
    return docs


def volume_name(path: str) -> str:
    """A display name for a volume or pyramid: its folder's (or file's) name."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return os.path.basename(path.rstrip(os.sep))
    return os.path.basename(os.path.dirname(path)) or os.path.basename(path)
