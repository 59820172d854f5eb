"""A target that exists but is not what the plan would write fails with the path and the difference.

Never a silent "already done": a folder, an unrelated file, or a volume of
another block size / dtype / codec / extent at ``--dest``; foreign planes
under an export pattern; another pyramid's ``info``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np
import pytest
import tifffile
from luigi.execution_summary import LuigiStatusCode

from blockfs_tasks.core.errors import OutputExistsError
from blockfs_tasks.tasks import BuildDirectory, Downsample, ExportTiff, ExportTiffSlab

from .conftest import Setter, luigi_command, luigi_settings

SOURCE = "synthetic:20x40x48"


@pytest.fixture
def settings() -> Iterator[Setter]:
    """set(section, key, value) for the test; every value set is restored after it."""
    with luigi_settings({("blockfs", "block_size"): 16}) as set_:
        yield set_


def build(task: luigi.Task) -> luigi.execution_summary.LuigiRunResult:
    return luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="CRITICAL")


def snapshot(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_dest_folder_or_foreign_file_fails(tmp_path: Path, settings):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OutputExistsError, match=r"out is a folder: name the volume's directory file"):
        BuildDirectory(source=SOURCE, dest=str(folder)).complete()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a volume")
    with pytest.raises(OutputExistsError, match=r"notes.txt exists and is not a blockfs volume"):
        BuildDirectory(source=SOURCE, dest=str(notes)).complete()
    before = snapshot(tmp_path)
    assert build(BuildDirectory(source=SOURCE, dest=str(notes))).status == LuigiStatusCode.SCHEDULING_FAILED
    assert snapshot(tmp_path) == before and notes.read_text() == "not a volume"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("blockfs", "block_size", 8), r"block size \[x, y, z\] \[16, 16, 16\] \(planned \[8, 8, 8\]\)"),
        (("blockfs", "compression", "lz4"), r"compression zstd \(planned lz4\)"),
        (("blockfs", "compression_level", 1), r"compression level 2 \(planned 1\)"),
        (("source", "synthetic:20x40x48:uint8", None), r"dtype uint16 \(planned uint8\)"),
        (("source", "synthetic:20x41x48", None), r"extent \[x, y, z\] \[48, 40, 20\] \(planned \[48, 41, 20\]\)"),
    ],
    ids=["block_size", "compression", "level", "dtype", "extent"],
)
def test_finished_volume_of_another_plan_fails(tmp_path: Path, settings, change, message):
    dest = str(tmp_path / "v.blockfs")
    assert build(BuildDirectory(source=SOURCE, dest=dest)).status == LuigiStatusCode.SUCCESS
    assert BuildDirectory(source=SOURCE, dest=dest).complete()
    source = SOURCE
    if change[0] == "source":
        source = change[1]
    else:
        settings(*change)
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match=rf"v.blockfs exists but is another volume than planned: .*{message}"):
        BuildDirectory(source=source, dest=dest).complete()
    assert build(BuildDirectory(source=source, dest=dest)).status == LuigiStatusCode.SCHEDULING_FAILED
    assert snapshot(tmp_path) == before


def test_finished_volume_is_done_when_its_source_is_gone(tmp_path: Path, settings):
    np.save(tmp_path / "src.npy", np.arange(20 * 30 * 40, dtype=np.uint16).reshape(20, 30, 40))
    dest = str(tmp_path / "v.blockfs")
    assert build(BuildDirectory(source=str(tmp_path / "src.npy"), dest=dest)).status == LuigiStatusCode.SUCCESS
    os.unlink(tmp_path / "src.npy")  # raw data removed after ingest: the volume stays valid
    luigi.task_register.Register.clear_instance_cache()
    assert BuildDirectory(source=str(tmp_path / "src.npy"), dest=dest).complete()


def test_foreign_planes_under_an_export_pattern_fail(tmp_path: Path, settings):
    dest = str(tmp_path / "v.blockfs")
    assert build(BuildDirectory(source=SOURCE, dest=dest)).status == LuigiStatusCode.SUCCESS
    pattern = str(tmp_path / "tiff" / "img_%02d.tiff")
    (tmp_path / "tiff").mkdir()
    for z in range(20):  # an export of another volume under the same pattern
        tifffile.imwrite(pattern % z, np.zeros((10, 10), np.uint16))
    with pytest.raises(OutputExistsError, match=r"img_00.tiff exists but is not a plane of .*\(10, 10\)"):
        ExportTiffSlab(volume=dest, output_pattern=pattern, z0=0, z1=16).complete()
    assert build(ExportTiff(volume=dest, output_pattern=pattern)).status != LuigiStatusCode.SUCCESS

    for z in range(20):
        os.unlink(pattern % z)
    assert build(ExportTiff(volume=dest, output_pattern=pattern)).status == LuigiStatusCode.SUCCESS
    luigi.task_register.Register.clear_instance_cache()
    assert ExportTiff(volume=dest, output_pattern=pattern).complete()  # its own planes are done


def test_another_pyramids_info_fails(tmp_path: Path, settings):
    dest = str(tmp_path / "v.blockfs")
    assert build(BuildDirectory(source=SOURCE, dest=dest)).status == LuigiStatusCode.SUCCESS
    out = tmp_path / "pyr"
    assert build(Downsample(volume=dest, out=str(out))).status == LuigiStatusCode.SUCCESS
    luigi.task_register.Register.clear_instance_cache()
    assert Downsample(volume=dest, out=str(out)).complete()
    settings("pyramid", "mode", "mode")
    with pytest.raises(OutputExistsError, match=r"info exists but describes another pyramid .*downsampling"):
        Downsample(volume=dest, out=str(out)).complete()
    (out / "info").write_text(json.dumps({"something": "else"}))
    with pytest.raises(OutputExistsError, match=r"info exists but describes another pyramid"):
        Downsample(volume=dest, out=str(out)).complete()


def test_luigi_command_exits_non_zero_on_a_foreign_dest(tmp_path: Path):
    (tmp_path / "v.blockfs").write_text("not a volume")
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    done = subprocess.run(
        luigi_command("BuildDirectory", "--source", SOURCE, "--dest", "v.blockfs", "--local-scheduler"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 35, done.stderr  # [retcode] scheduling_error of the package defaults
    assert "v.blockfs exists and is not a blockfs volume" in done.stderr
    assert "Did not run any tasks" in done.stderr and (tmp_path / "v.blockfs").read_text() == "not a volume"
