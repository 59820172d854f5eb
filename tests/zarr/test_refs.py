"""The references file: zarr-python over fsspec's ReferenceFileSystem reads every level exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("fsspec")

from zarr_fixtures import PyramidSample, Volume, sample_data, write_volume

from blockfs_tasks.cli import refs_main
from blockfs_tasks.core import Directory
from blockfs_tasks.zarr import write_references

V1 = Path(__file__).resolve().parents[1] / "data" / "blockfs-v1"


def open_refs(json_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Open as a user without blockfs would: from the JSON's folder, fsspec and zarr only."""
    monkeypatch.chdir(json_path.parent)
    return zarr.open_group("reference://", storage_options={"fo": json_path.name}, mode="r")


@pytest.mark.parametrize("inline", [False, True])
def test_pyramid_refs_read_every_level(pyramid: PyramidSample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool) -> None:
    out = tmp_path / "refs" / "pyr.json"
    out.parent.mkdir()
    summary = write_references(pyramid.folder, out, inline_edges=inline)
    group = open_refs(out, monkeypatch)
    for i, want in enumerate(pyramid.levels):
        assert np.array_equal(group[str(i)][...], want), i
    assert group.attrs["multiscales"][0]["datasets"][1]["path"] == "1"
    assert (summary.side_path is None) == inline and summary.edge_chunks > 0
    assert os.path.exists(out.with_suffix(".edges")) != inline


def test_interior_chunks_point_into_the_block_files(volume: Volume, tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    summary = write_references(volume.path, out)
    doc = json.loads(out.read_text())
    assert doc["version"] == 1
    d = Directory.open(str(volume.path))
    entry = d.index[d.grid.position(16, 0, 0)]
    ref = doc["refs"]["0/0/0/1"]
    assert ref[1:] == [int(entry["offset"]), int(entry["size"])]
    assert doc["templates"][ref[0].strip("{}")] == os.path.relpath(d.block_filenames[entry["file"] - 1], tmp_path)
    # only padded edges are written; every interior reference is a stored frame
    assert summary.chunks + summary.edge_chunks == len(d)
    assert summary.side_bytes == os.path.getsize(summary.side_path)  # type: ignore[arg-type]


def test_no_interior_block_is_copied_and_side_file_is_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample_data("uint16", (70, 130, 130))
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (32, 32, 32))
    out = tmp_path / "v.json"
    summary = write_references(path, out)
    assert summary.chunks == 2 * 4 * 4 and summary.edge_chunks == 5 * 5 * 3 - 2 * 4 * 4
    assert np.array_equal(open_refs(out, monkeypatch)["0"][...], data)


@pytest.mark.parametrize("case", ["v1_uint16_zstd", "v1_uint8_lz4_sparse"])
def test_format_1_volumes(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v1.json"
    write_references(V1 / case / "precomputed.blockfs", out)
    assert np.array_equal(open_refs(out, monkeypatch)["0"][...], np.load(V1 / case / "expected.npy"))


def test_zarr_v3_refs(volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v3.json"
    write_references(volume.path, out, zarr_format=3)
    group = open_refs(out, monkeypatch)
    assert group.metadata.zarr_format == 3 and np.array_equal(group["0"][...], volume.expected)


def test_url_prefix_for_a_copied_folder(volume: Volume, tmp_path: Path) -> None:
    """The prefix names the JSON's folder; here an absolute file:// URL, read from any working directory."""
    out = tmp_path / "p.json"
    write_references(volume.path, out, url_prefix=f"file://{tmp_path}/")
    doc = json.loads(out.read_text())
    assert all(v.startswith(f"file://{tmp_path}/") for v in doc["templates"].values())
    group = zarr.open_group("reference://", storage_options={"fo": str(out)}, mode="r")
    assert np.array_equal(group["0"][...], volume.expected)


def test_cli(volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "vol.json"
    assert refs_main([str(volume.path), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert np.array_equal(open_refs(out, monkeypatch)["0"][...], volume.expected)
    assert refs_main([str(tmp_path / "missing.blockfs"), str(out)]) == 1
    assert "error" in capsys.readouterr().err
