"""Codecs beyond Blosc: lossless float codecs (fpzip, pcodec), kempressed and the BitRound filter.

:mod:`.registry` maps the names users pick (``compression="fpzip"``) and the
ids of format 2.1.0 codec records to these codecs; the Blosc codec itself is
:class:`blockfs_tasks.core.codec.BlockCodec`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def describe_loss(codec: Any, dtype: np.dtype) -> str:
    """The loss bound of ``codec`` on ``dtype`` data in words ("lossless", "|error| <= ...")."""
    loss = codec.loss
    if not loss:
        return "lossless"
    parts = []
    if "max_rel_error" in loss:
        parts.append(f"{loss['max_rel_error']:.3g} * max(|value|, {float(np.finfo(np.dtype(dtype)).tiny):.3g})")
    if "max_abs_error_eps" in loss:
        eps = loss["max_abs_error_eps"] * float(np.finfo(np.dtype(dtype)).eps)
        parts.append(f"{eps:.3g}")
    why = []
    if "max_rel_error" in loss:
        why.append(f"BitRound to {codec.keepbits} mantissa bits")
    if "max_abs_error_eps" in loss:
        why.append(f"{loss['max_abs_error_eps']:g} machine epsilon of {np.dtype(dtype).name}")
    return f"|error| <= {' + '.join(parts)} ({'; '.join(why)})"
