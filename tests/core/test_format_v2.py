"""Format 2.0.0 volumes (written before format 2.1.0) still read: golden volumes of tests/data/blockfs-v2.0.0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory

from .helpers import TESTS, same

V2_DATA = TESTS / "data" / "blockfs-v2.0.0"
V2_CASES = sorted(p.name for p in V2_DATA.iterdir() if (p / "precomputed.blockfs").exists())


def _fixture(case: str) -> tuple[Path, np.ndarray, dict]:
    folder = V2_DATA / case
    return (
        folder / "precomputed.blockfs",
        np.load(folder / "expected.npy"),
        json.loads((folder / "case.json").read_text()),
    )


def test_both_golden_volumes_are_present() -> None:
    assert V2_CASES == ["v2_float32_lz4_batch", "v2_uint16_zstd_live"]


@pytest.mark.parametrize("case", V2_CASES)
def test_golden_volume_reads_as_expected(case: str) -> None:
    path, expected, meta = _fixture(case)
    d = Directory.open(path)
    assert d.version == "2.0.0"
    assert d.shape == expected.shape == tuple(meta["extent_xyz"][::-1])
    assert d.dtype == expected.dtype == np.dtype(meta["dtype"])
    assert d.grid.block_xyz == tuple(meta["block_xyz"])
    assert (d.compression, d.compression_level, d.spec.codec.shuffle) == (
        meta["compression"],
        meta["level"],
        meta["shuffle"],
    )
    assert same(d[:, :, :], expected)
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        assert same(d.read_block(x, y, z), expected[z : z + sz, y : y + sy, x : x + sx]), (x, y, z)


def test_golden_live_volume_keeps_its_application_metadata() -> None:
    path, _, _ = _fixture("v2_uint16_zstd_live")
    assert Directory.open(path).metadata == {"voxel_size_um": [1.8, 1.8, 2.0]}


def test_golden_files_are_untouched_by_reading() -> None:
    before = {p: p.stat().st_mtime_ns for p in V2_DATA.rglob("*")}
    for case in V2_CASES:
        Directory.open(V2_DATA / case / "precomputed.blockfs")[:, :, :]
    assert {p: p.stat().st_mtime_ns for p in V2_DATA.rglob("*")} == before
