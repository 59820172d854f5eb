"""A Neuroglancer link whose contrast fits the data.

Neuroglancer's default image shader maps the data type's whole range to black
to white, so 12-bit data stored as uint16 show black. The link printed by
``blockfs-serve`` sets the layer's ``normalized`` (invlerp) range to the 0.5th
to 99.5th percentile of a few chunks of the coarsest scale (cheap: a handful
of block reads).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import quote

import numpy as np

from ..core.errors import BlockfsError
from .precomputed import PrecomputedVolume

logger = logging.getLogger(__name__)

NEUROGLANCER = "https://neuroglancer-demo.appspot.com"
SAMPLE_CHUNKS = 8


def display_range(samples: Iterable[np.ndarray]) -> tuple[float, float] | None:
    """(low, high) from the 0.5th and 99.5th percentiles of the samples; None without samples."""
    values = [np.asarray(s).ravel() for s in samples]
    values = [v for v in values if v.size]
    if not values:
        return None
    low, high = (float(v) for v in np.percentile(np.concatenate(values), [0.5, 99.5]))
    if high <= low:
        high = low + 1
    if all(v.dtype.kind in "iu" for v in values):
        low, high = float(np.floor(low)), float(np.ceil(high))
    return low, high


_T = TypeVar("_T")


def _spread(items: list[_T], n: int) -> list[_T]:
    """Up to ``n`` items spread evenly over ``items``."""
    if len(items) <= n:
        return items
    return [items[i * (len(items) - 1) // (n - 1)] for i in range(n)]


def volume_samples(source: PrecomputedVolume, n: int = SAMPLE_CHUNKS) -> list[np.ndarray]:
    """Up to ``n`` blocks of the coarsest scale, spread over the volume."""
    scale = source.scales[-1]
    origins = _spread(list(scale.directory), n)
    return [scale.directory.read_block(*origin) for origin in origins]


def static_tree_samples(folder: str, n: int = SAMPLE_CHUNKS) -> list[np.ndarray]:
    """Up to ``n`` chunks of the coarsest scale of an unsharded raw static tree (none for other trees)."""
    try:
        with open(os.path.join(folder, "info"), "rb") as f:
            info = json.load(f)
        scale = info["scales"][-1]
        if scale.get("sharding") or scale.get("encoding") != "raw":
            return []
        dtype = np.dtype(info["data_type"]).newbyteorder("<")
        scale_folder = os.path.join(folder, scale["key"])
        names = sorted(os.listdir(scale_folder))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []
    samples = []
    for name in _spread(names, n):
        with open(os.path.join(scale_folder, name), "rb") as f:
            raw = f.read()
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
        samples.append(np.frombuffer(raw[: len(raw) - len(raw) % dtype.itemsize], dtype))
    return samples


def neuroglancer_url(
    source_url: str,
    layer_type: str = "image",
    value_range: tuple[float, float] | None = None,
    name: str = "blockfs",
    base: str = NEUROGLANCER,
) -> str:
    """A Neuroglancer URL showing ``source_url`` (``precomputed://...``), with an image layer's contrast range."""
    layer: dict[str, object] = {"type": layer_type, "source": source_url, "name": name}
    if layer_type == "image" and value_range is not None:
        layer["shaderControls"] = {"normalized": {"range": list(value_range)}}
    state = {"layers": [layer], "selectedLayer": {"layer": name, "visible": True}, "layout": "4panel"}
    return f"{base.rstrip('/')}/#!" + quote(json.dumps(state, separators=(",", ":")), safe="")


def link_for_volume(source: PrecomputedVolume, source_url: str, base: str = NEUROGLANCER) -> str:
    """The Neuroglancer link for a served volume or pyramid, contrast sampled from its coarsest scale."""
    value_range = None
    if source.layer_type == "image":
        try:
            value_range = display_range(volume_samples(source))
        except (BlockfsError, OSError) as e:
            logger.warning("could not sample the data for a contrast range: %s", e)
    return neuroglancer_url(source_url, source.layer_type, value_range, base=base)


def link_for_static_tree(folder: str, source_url: str, base: str = NEUROGLANCER) -> str:
    """The Neuroglancer link for a served static tree (contrast sampled when the tree is unsharded and raw)."""
    try:
        with open(os.path.join(folder, "info"), "rb") as f:
            layer_type = str(json.load(f).get("type", "image"))
    except (OSError, ValueError, AttributeError):
        layer_type = "image"
    value_range = display_range(static_tree_samples(folder)) if layer_type == "image" else None
    return neuroglancer_url(source_url, layer_type, value_range, base=base)
