"""The references file: zarr-python over fsspec's ReferenceFileSystem reads every level exactly."""

# ruff: noqa: E402  # imports after pytest.importorskip: without zarr the module is skipped, not a collection error

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("fsspec")

from zarr_fixtures import PyramidSample, Volume, expected, sample_data, write_volume

from blockfs_tasks.cli import refs_main
from blockfs_tasks.core import Directory
from blockfs_tasks.core.errors import BlockfsError
from blockfs_tasks.zarr import write_references

V1 = Path(__file__).resolve().parents[1] / "data" / "blockfs-v1"


def open_refs(json_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Open as a user without blockfs would: from the JSON's folder, fsspec and zarr only."""
    monkeypatch.chdir(json_path.parent)
    return zarr.open_group("reference://", storage_options={"fo": json_path.name}, mode="r")


@pytest.mark.parametrize("inline", [False, True])
def test_pyramid_refs_read_every_level(
    pyramid: PyramidSample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
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
    assert doc["templates"][ref[0].strip("{}")] == "file://" + os.path.abspath(d.block_filenames[entry["file"] - 1])
    # only padded edges are written; every interior reference is a stored frame
    assert summary.chunks + summary.edge_chunks == len(d)
    assert summary.side_bytes == os.path.getsize(summary.side_path)  # type: ignore[arg-type]  # set: this volume has edges


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


def test_cli(
    volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli" / "vol.json"
    assert refs_main([str(volume.path), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert np.array_equal(open_refs(out, monkeypatch)["0"][...], volume.expected)
    assert refs_main([str(tmp_path / "missing.blockfs"), str(out)]) == 1
    assert "error" in capsys.readouterr().err


def test_default_refs_open_from_any_folder(volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default references name absolute file:// URLs: fsspec would resolve relative ones against the cwd."""
    out = tmp_path / "refs" / "v.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    summary = write_references(volume.path, out)
    doc = json.loads(out.read_text())
    assert all(v.startswith("file:///") for v in doc["templates"].values()) and "e" in doc["templates"]
    monkeypatch.chdir(elsewhere)
    group = zarr.open_group("reference://", storage_options={"fo": str(out)}, mode="r")
    assert np.array_equal(group["0"][...], volume.expected)
    assert summary.side_path == str(out.with_suffix(".edges"))


def test_relative_refs_open_from_their_folder(volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v.json"
    write_references(volume.path, out, relative=True)
    doc = json.loads(out.read_text())
    assert set(doc["templates"].values()) == {"vol/precomputed.blockfs.0", "v.edges"} or all(
        not v.startswith(("/", "file:")) for v in doc["templates"].values()
    )
    assert np.array_equal(open_refs(out, monkeypatch)["0"][...], volume.expected)
    with pytest.raises(BlockfsError):
        write_references(volume.path, out, url_prefix="s3://b/", relative=True)


def test_side_file_costs_what_the_edge_blocks_cost(tmp_path: Path) -> None:
    """Padded edge chunks use the volume's own codec: zeros add almost nothing to the truncated blocks' bytes."""
    data = sample_data("uint16", (70, 130, 130))
    data[:] = np.arange(130, dtype=np.uint16)  # compressible, like real images
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (32, 32, 32), compression="zstd", compression_level=5)
    summary = write_references(path, tmp_path / "v.json")
    assert summary.edge_chunks == 43 and summary.edge_stored_bytes > 0
    assert summary.side_bytes < 1.25 * summary.edge_stored_bytes + 64 * summary.edge_chunks


# ------------------------------------------------------------------ parquet
def open_parquet(folder: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path):
    monkeypatch.chdir(cwd)
    return zarr.open_group("reference://", storage_options={"fo": str(folder)}, mode="r")


def test_parquet_refs_of_a_pyramid(pyramid: PyramidSample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastparquet")
    out = tmp_path / "refs.parq"
    summary = write_references(pyramid.folder, out, fmt="parquet", record_size=7)
    assert summary.side_path == str(out / "edges") and summary.edge_chunks > 0
    assert (out / ".zmetadata").is_file() and (out / "0" / "refs.0.parq").is_file()
    group = open_parquet(out, monkeypatch, tmp_path / "pyr")
    for i, want in enumerate(pyramid.levels):
        assert np.array_equal(group[str(i)][...], want), i
    assert group.attrs["multiscales"][0]["datasets"][1]["path"] == "1"
    # rewriting replaces the folder as a whole
    write_references(pyramid.folder, out, fmt="parquet")
    assert not (out / "0" / "refs.1.parq").exists()
    assert np.array_equal(open_parquet(out, monkeypatch, tmp_path)["0"][...], pyramid.levels[0])


def test_parquet_sparse_volume_skips_empty_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absent blocks read as zeros; a record of positions without any block has no file at all."""
    pytest.importorskip("fastparquet")
    data = sample_data("uint8", (64, 64, 64))
    steps = range(0, 64, 16)
    absent = {(x, y, z) for x in steps for y in steps for z in steps if z >= 32 or y >= 32}
    path = tmp_path / "v.blockfs"
    write_volume(path, data, (16, 16, 16), absent=absent)
    out = tmp_path / "v.parq"
    summary = write_references(path, out, fmt="parquet", record_size=8)
    assert summary.chunks == 4 * 4 * 4 - len(absent) and summary.side_path is None
    # positions 8..15 (z 0, y 2..3) hold no block: no refs.1.parq
    assert sorted(p.name for p in (out / "0").iterdir()) == ["refs.0.parq", "refs.2.parq"]
    got = open_parquet(out, monkeypatch, tmp_path)["0"][...]
    assert np.array_equal(got, expected(data, (16, 16, 16), absent))


def test_parquet_cli_and_refusals(
    volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastparquet")
    out = tmp_path / "cli.parq"
    assert refs_main([str(volume.path), str(out), "--format", "parquet"]) == 0
    assert str(out) in capsys.readouterr().out
    assert np.array_equal(open_parquet(out, monkeypatch, tmp_path / "vol")["0"][...], volume.expected)
    assert refs_main([str(volume.path), str(out), "--format", "parquet", "--zarr-format", "3"]) == 1
    assert "zarr v2" in capsys.readouterr().err
    assert refs_main([str(volume.path), str(out), "--format", "parquet", "--inline-edges"]) == 1
    assert refs_main([str(volume.path), str(tmp_path / "r.json"), "--relative"]) == 0
    assert np.array_equal(open_refs(tmp_path / "r.json", monkeypatch)["0"][...], volume.expected)
