"""The codec registry: compression names and codec ids beyond Blosc, and reading their records."""

from __future__ import annotations

from typing import Any

from ..codec import Codec, short_repr
from ..errors import UnsupportedCodecError
from .floats import FpzipCodec, KempressedCodec, PcodecCodec

# name (= codec id) -> codec class; each has from_level(level) and from_record(record).
CODECS: dict[str, Any] = {c.id: c for c in (FpzipCodec, PcodecCodec, KempressedCodec)}


def from_dict(record: dict[str, Any]) -> Codec:
    """The codec of a non-Blosc codec record, or UnsupportedCodecError naming its id."""
    codec_id = record["id"]
    if codec_id not in CODECS:
        raise UnsupportedCodecError(f"unknown codec id {short_repr(codec_id)}; this reader knows {['blosc', *CODECS]}")
    result: Codec = CODECS[codec_id].from_record(record)
    return result
