"""ExportReferences: a references JSON that zarr reads without blockfs; reruns do nothing; foreign files refused."""

from __future__ import annotations

import os
from pathlib import Path

import luigi
import numpy as np
import pytest
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core import Directory
from blockfs_tasks.tasks import ExportReferences


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(3).integers(0, 4000, (40, 37, 53)).astype(np.uint16)
    d = Directory(53, 37, 40, np.uint16, tmp_path / "v.blockfs", 16, 16, 16)
    d.create()
    d.write_blocks((data[z : z + 16, y : y + 16, x : x + 16], x, y, z) for x, y, z in d.grid.origins())
    d.close()
    luigi.task_register.Register.clear_instance_cache()
    return tmp_path / "v.blockfs", data


def build(task: luigi.Task) -> luigi.execution_summary.LuigiRunResult:
    return luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")


def test_references_read_back_with_zarr_and_a_rerun_does_nothing(tmp_path: Path, volume, monkeypatch) -> None:
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("fsspec")
    path, data = volume
    out = tmp_path / "refs" / "v.json"
    out.parent.mkdir()
    assert build(ExportReferences(volume=str(path), out_json=str(out), url_prefix=f"file://{out.parent}/")).status == (
        LuigiStatusCode.SUCCESS
    )
    group = zarr.open_group("reference://", storage_options={"fo": str(out)}, mode="r")
    np.testing.assert_array_equal(group["0"][...], data)
    before = os.stat(out).st_mtime_ns
    luigi.task_register.Register.clear_instance_cache()
    result = build(ExportReferences(volume=str(path), out_json=str(out), url_prefix=f"file://{out.parent}/"))
    assert result.status == LuigiStatusCode.SUCCESS_WITH_RETRY or result.status == LuigiStatusCode.SUCCESS
    assert os.stat(out).st_mtime_ns == before


def test_a_foreign_file_at_the_output_is_an_error_not_done(tmp_path: Path, volume) -> None:
    path, _ = volume
    out = tmp_path / "notes.json"
    out.write_text('{"hello": 1}')
    result = build(ExportReferences(volume=str(path), out_json=str(out)))
    assert result.status != LuigiStatusCode.SUCCESS
    assert out.read_text() == '{"hello": 1}'
