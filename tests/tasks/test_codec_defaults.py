"""The pipeline's codec defaults are the measured choice (zstd-2, byte shuffle); the live API keeps zstd-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockfs_tasks.core import Directory
from blockfs_tasks.core.codec import BlockCodec
from blockfs_tasks.ingest.planning import INGEST_CODEC, pipeline_codec
from blockfs_tasks.tasks.config import blockfs
from blockfs_tasks.tasks.defaults import read_defaults


def test_pipeline_defaults_are_zstd_2_with_byte_shuffle_everywhere_they_are_written() -> None:
    section = read_defaults()["blockfs"]
    assert (section["compression"], section["compression_level"], section["shuffle"]) == ("zstd", "", "byte")
    params = blockfs.get_params()
    defaults = {name: p._default for name, p in params}
    assert (defaults["compression"], defaults["compression_level"], defaults["shuffle"]) == ("zstd", None, 1)
    assert INGEST_CODEC == BlockCodec("zstd", 2, True)  # a script's ingest writes what a Luigi run writes
    assert pipeline_codec("zstd", None) == INGEST_CODEC  # an empty level: the measured Blosc level
    assert pipeline_codec("zstd", 7).level == 7


def test_a_float_codec_without_a_level_gets_its_own_default_not_blosc_s() -> None:
    assert pipeline_codec("pcodec", None).to_dict() == {"id": "pcodec", "level": 8}
    assert pipeline_codec("pcodec", 4).to_dict() == {"id": "pcodec", "level": 4}


def test_live_directory_keeps_the_original_defaults(tmp_path: Path) -> None:
    d = Directory(8, 8, 8, np.uint16, tmp_path / "v.blockfs")  # nothing is written before create()
    assert d.spec.codec == BlockCodec("zstd", 5, True)
