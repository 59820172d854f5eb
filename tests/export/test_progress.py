"""Exporters report ``progress(done, total)`` during the work, not only at the end (issue 8 item 5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import hdf5_main, jp2k_main, tif_main
from blockfs_tasks.core import Directory
from blockfs_tasks.export.hdf5 import export_hdf5
from blockfs_tasks.export.jp2k import export_jp2k
from blockfs_tasks.export.tiff import export_tiff, plan_tiff


def make_volume(path: Path, shape_zyx: tuple[int, int, int], block_zyx: tuple[int, int, int]) -> np.ndarray:
    """A closed uint16 volume of random data with (z, y, x) blocks; return the data."""
    data = np.random.default_rng(3).integers(0, 4096, shape_zyx, dtype=np.uint16)
    (nz, ny, nx), (bz, by, bx) = shape_zyx, block_zyx
    d = Directory(nx, ny, nz, data.dtype, str(path), x_block_size=bx, y_block_size=by, z_block_size=bz)
    d.create()
    d.write_blocks([(data[z : z + bz, y : y + by, x : x + bx], x, y, z) for x, y, z in d.grid.origins()], 2)
    d.close()
    return data


def check_calls(calls: list[tuple[int, int, int]]) -> None:
    """(done, total, files published at the call): rising to total, with calls before the end."""
    assert calls, "progress was never called"
    dones = [done for done, _, _ in calls]
    totals = {total for _, total, _ in calls}
    assert len(totals) == 1 and dones == sorted(dones) and dones[-1] == totals.pop()
    assert any(0 < done < total for done, total, _ in calls), "progress only at the end"


def published(folder: Path) -> int:
    return len([f for f in os.listdir(folder) if ".tmp-" not in f]) if folder.exists() else 0


def test_tiff_reports_bands_of_one_slab_before_its_planes_are_published(tmp_path: Path) -> None:
    # One block depth of planes is one group (one Luigi slab): progress must move inside it.
    make_volume(tmp_path / "v.blockfs", (8, 128, 64), (8, 16, 64))
    budget = 1_500_000
    plan = plan_tiff((8, 128, 64), (8, 16, 64), 2, 1, budget)
    assert plan.group_planes == 8 and plan.band_rows < 128, plan
    out = tmp_path / "out"
    calls: list[tuple[int, int, int]] = []
    export_tiff(str(tmp_path / "v.blockfs"), str(out / "p_%02d.tif"), n_threads=1, memory_budget=budget,
                progress=lambda done, total: calls.append((done, total, published(out))))
    check_calls(calls)
    assert calls[-1][1] == 8 * 128
    assert [files for done, total, files in calls if done < total] and all(
        files == 0 for done, total, files in calls if done < total
    ), "a call before the end came after the planes were published"


def test_jp2k_reports_each_plane(tmp_path: Path) -> None:
    make_volume(tmp_path / "v.blockfs", (4, 32, 32), (4, 32, 32))
    calls: list[tuple[int, int, int]] = []
    export_jp2k(str(tmp_path / "v.blockfs"), str(tmp_path / "out" / "p_%02d.jp2"), n_threads=1, codec="jp2",
                progress=lambda done, total: calls.append((done, total, 0)))
    check_calls(calls)
    assert [done for done, _, _ in calls] == [1, 2, 3, 4]


def test_hdf5_reports_each_chunk(tmp_path: Path) -> None:
    make_volume(tmp_path / "v.blockfs", (16, 32, 32), (8, 16, 16))
    calls: list[tuple[int, int, int]] = []
    export_hdf5(str(tmp_path / "v.blockfs"), str(tmp_path / "o.h5"), "data", n_threads=1,
                progress=lambda done, total: calls.append((done, total, 0)))
    check_calls(calls)
    assert [done for done, _, _ in calls] == list(range(1, 9))


def test_cli_bars_count_planes_and_chunks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_volume(tmp_path / "v.blockfs", (8, 128, 64), (8, 16, 64))
    vol = str(tmp_path / "v.blockfs")
    assert tif_main(["--input", vol, "--output-pattern", str(tmp_path / "t" / "p_%02d.tif"),
                     "--memory-budget", "1500000"]) == 0
    assert "8/8" in capsys.readouterr().err
    assert jp2k_main(["--input", vol, "--output-pattern", str(tmp_path / "j" / "p_%02d.jp2")]) == 0
    assert "8/8" in capsys.readouterr().err
    assert hdf5_main([vol, str(tmp_path / "o.h5"), "data"]) == 0
    assert "8/8" in capsys.readouterr().err
