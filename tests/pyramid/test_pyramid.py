"""Pyramids: level planning, MEAN / MODE reductions, batches into both writers, whole builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.batch import BatchWriter, build_directory
from blockfs_tasks.core.errors import ConfigurationError, VolumeExistsError
from blockfs_tasks.core.format import VolumeSpec
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.pyramid import (
    Pyramid,
    build_pyramid,
    downsample_batch,
    downsample_mean,
    downsample_mode,
    level_spec,
    plan_downsample_batches,
    plan_levels,
    plan_pyramid,
)

INT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")


def write_volume(path: Path, data: np.ndarray, block_xyz: tuple[int, int, int], absent: set = frozenset()) -> Directory:
    z, y, x = data.shape
    d = Directory(x, y, z, data.dtype, str(path), *block_xyz)
    d.create()
    for ox, oy, oz in d.grid.origins():
        if (ox, oy, oz) not in absent:
            sz, sy, sx = d.grid.block_shape_at(ox, oy, oz)
            d.write_block(data[oz : oz + sz, oy : oy + sy, ox : ox + sx], ox, oy, oz)
    d.close()
    return Directory.open(str(path))


def windows(a: np.ndarray, step_zyx: tuple[int, int, int]) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """(output index, window values) for every window, edge windows cut short: the reference."""
    out_shape = tuple(-(-n // s) for n, s in zip(a.shape, step_zyx, strict=True))
    for idx in np.ndindex(*out_shape):
        sl = tuple(slice(i * s, (i + 1) * s) for i, s in zip(idx, step_zyx, strict=True))
        yield idx, a[sl].ravel()


def reference_mean(a: np.ndarray, step_zyx: tuple[int, int, int]) -> np.ndarray:
    out = np.empty(tuple(-(-n // s) for n, s in zip(a.shape, step_zyx, strict=True)), a.dtype)
    for idx, w in windows(a, step_zyx):
        if a.dtype.kind == "f":
            out[idx] = np.mean(w.astype(np.float64))
        else:
            total, n = sum(int(v) for v in w), len(w)
            out[idx] = (2 * total + n) // (2 * n)  # round half up, exact Python ints
    return out


def reference_mode(a: np.ndarray, step_zyx: tuple[int, int, int]) -> np.ndarray:
    out = np.empty(tuple(-(-n // s) for n, s in zip(a.shape, step_zyx, strict=True)), a.dtype)
    for idx, w in windows(a, step_zyx):
        counts = Counter(w.tolist())
        best = max(counts.values())
        out[idx] = min(v for v, c in counts.items() if c == best)
    return out


# ------------------------------------------------------------------ planning
def test_isotropic_levels_halve_until_one_block() -> None:
    levels = plan_levels((100, 300, 500), (64, 64, 64), (1, 1, 1))
    assert [lv.key for lv in levels] == ["1_1_1", "2_2_2", "4_4_4", "8_8_8"]
    assert [lv.extent_xyz for lv in levels] == [(500, 300, 100), (250, 150, 50), (125, 75, 25), (63, 38, 13)]
    assert levels[-1].resolution_nm_xyz == (8.0, 8.0, 8.0)
    assert all(lv.step_xyz == (2, 2, 2) for lv in levels[1:])


def test_anisotropic_voxels_are_not_downsampled_in_z_until_near_isotropic() -> None:
    levels = plan_levels((200, 2048, 2048), (64, 64, 32), (0.5, 0.5, 2.0))
    assert [lv.step_xyz for lv in levels[1:4]] == [(2, 2, 1), (2, 2, 1), (2, 2, 2)]
    assert [lv.key for lv in levels[:4]] == ["1_1_1", "2_2_1", "4_4_1", "8_8_2"]
    assert levels[2].resolution_nm_xyz == (2.0, 2.0, 2.0)
    # just under the threshold (1.5x): isotropic steps from the start
    assert plan_levels((200, 2048, 2048), (64, 64, 64), (1, 1, 1.4))[1].step_xyz == (2, 2, 2)
    assert plan_levels((200, 2048, 2048), (64, 64, 64), (1, 1, 1.6))[1].step_xyz == (2, 2, 1)
    last = levels[-1]
    assert all(e <= b for e, b in zip(last.extent_xyz, (64, 64, 32), strict=True))


def test_an_axis_of_extent_one_stops_and_the_others_go_on() -> None:
    levels = plan_levels((1, 1, 1000), (16, 16, 16), (1, 1, 50))  # only x can shrink, though finest
    assert [lv.step_xyz for lv in levels[1:]] == [(2, 1, 1)] * 6
    assert levels[-1].extent_xyz == (16, 1, 1)
    assert plan_levels((3, 3, 3), (4, 4, 4)) == plan_levels((3, 3, 3), (4, 4, 4))[:1]


def test_max_levels_and_explicit_factors() -> None:
    assert len(plan_levels((512, 512, 512), (32, 32, 32), max_levels=3)) == 3
    assert len(plan_levels((512, 512, 512), (32, 32, 32), max_levels=1)) == 1
    levels = plan_levels((10, 10, 10), (64, 64, 64), factors=[(2, 2, 1), (3, 1, 2)])
    assert [lv.key for lv in levels] == ["1_1_1", "2_2_1", "6_2_2"]
    assert levels[2].extent_xyz == (2, 5, 5)
    assert len(plan_levels((10, 10, 10), (4, 4, 4), max_levels=2, factors=[(2, 2, 2)] * 5)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape_zyx": (10, 10)},
        {"shape_zyx": (0, 10, 10)},
        {"block_xyz": (64, 0, 64)},
        {"resolution_nm_xyz": (1, -1, 1)},
        {"max_levels": 0},
        {"factors": [(2, 2, 0)]},
        {"factors": [(1, 1, 1)]},  # same key twice
    ],
)
def test_bad_plans_are_refused(kwargs: dict) -> None:
    args = {"shape_zyx": (10, 10, 10), "block_xyz": (4, 4, 4), **kwargs}
    with pytest.raises(ConfigurationError):
        plan_levels(**args)


def test_batches_cover_every_block_once() -> None:
    spec = VolumeSpec(BlockGrid((100, 70, 30), (16, 16, 8)), np.dtype("uint8"))
    every = list(spec.grid.origins())
    for target in (1, 3, 7, len(every), len(every) + 10):
        batches = plan_downsample_batches(spec, target)
        assert len(batches) == min(target, len(every)) and all(batches)
        assert [o for b in batches for o in b] == every
        assert max(map(len, batches)) - min(map(len, batches)) <= 1
    with pytest.raises(ConfigurationError):
        plan_downsample_batches(spec, 0)


# ---------------------------------------------------------------- reductions
@pytest.mark.parametrize("dtype", [*INT_DTYPES, "float32", "float64"])
@pytest.mark.parametrize("step", [(2, 2, 2), (1, 2, 2), (3, 2, 1)], ids=str)
def test_mean_matches_the_reference_with_odd_edges(dtype: str, step: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{dtype}{step}".encode()))
    shape = (5, 7, 9)
    if dtype.startswith("float"):
        a = (rng.standard_normal(shape) * 1000).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)  # full range: 64-bit sums overflow
    got = downsample_mean(a, step)
    assert got.dtype == a.dtype
    if a.dtype.kind == "f":  # float64 sums in another order may differ in the last bit
        np.testing.assert_allclose(got, reference_mean(a, step), rtol=1e-12)
    else:
        assert np.array_equal(got, reference_mean(a, step))


def test_mean_rounds_half_up_and_averages_only_voxels_present() -> None:
    a = np.array([[[0, 1, 7]]], np.uint8)  # windows [0, 1] -> 0.5 -> 1 and [7] alone -> 7
    assert downsample_mean(a, (1, 1, 2)).tolist() == [[[1, 7]]]
    b = np.array([[[-1, -2, -3]]], np.int16)  # -1.5 -> -1 (half up), -3 alone
    assert downsample_mean(b, (1, 1, 2)).tolist() == [[[-1, -3]]]
    top = np.full((2, 2, 3), np.iinfo(np.uint64).max, np.uint64)
    assert np.array_equal(downsample_mean(top, (2, 2, 2)), top[:1, :1, :2])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int32", "int64"])
@pytest.mark.parametrize("step", [(2, 2, 2), (1, 2, 2), (2, 3, 1)], ids=str)
def test_mode_matches_the_reference_with_odd_edges(dtype: str, step: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(5)
    labels = np.array([0, 3, 5, 7], dtype)
    if np.dtype(dtype).itemsize == 8:
        labels = labels * np.array(2**40 + 1, dtype)
    a = labels[rng.integers(0, len(labels), (7, 9, 11))]
    got = downsample_mode(a, step)
    assert got.dtype == a.dtype
    assert np.array_equal(got, reference_mode(a, step))


def test_mode_ties_go_to_the_smallest_label() -> None:
    a = np.array([9, 4, 4, 9, 2, 2, 7, 1], np.uint32).reshape(2, 2, 2)  # 9, 4, 2 twice each
    assert downsample_mode(a, (2, 2, 2)).item() == 2
    b = np.array([[[5, 3, 3]]], np.uint8)  # window [5, 3] ties -> 3; [3] alone -> 3
    assert downsample_mode(b, (1, 1, 2)).tolist() == [[[3, 3]]]
    c = np.array([[[6, 6, 1, 0, 0, 0]]], np.uint64)
    assert downsample_mode(c, (1, 1, 4)).tolist() == [[[6, 0]]]  # 6 twice beats 0 and 1; [0, 0] cut short


# ---------------------------------------------------------------- batches
@pytest.fixture()
def level0(tmp_path: Path) -> tuple[Directory, np.ndarray]:
    data = np.random.default_rng(1).integers(0, 4000, (21, 37, 45), dtype=np.uint16)
    absent = {(x, y, z) for x in (0, 16) for y in (0, 16) for z in (0, 8)}  # all sources of one 2x2x2 block
    absent |= {(32, 32, 8)}  # one of several sources
    d = write_volume(tmp_path / "l0.blockfs", data, (16, 16, 8), absent)
    return d, d[:, :, :]


def test_downsample_batch_into_batch_writers_and_a_live_directory(tmp_path: Path, level0: tuple) -> None:
    src, full = level0
    levels = plan_levels(src.shape, src.grid.block_xyz, (1, 1, 1), max_levels=2)
    spec = level_spec(src.spec, levels[1])
    path = str(tmp_path / "l1.blockfs")
    batches = plan_downsample_batches(spec, 3)
    for number, origins in enumerate(batches):
        with BatchWriter(path, spec, number) as writer:
            downsample_batch(src, spec, writer, origins, "mean", n_threads=2)
    build_directory(path, spec, range(len(batches)))
    batched = Directory.open(path)

    live = Directory(*spec.grid.extent_xyz, spec.dtype, str(tmp_path / "live.blockfs"), *spec.grid.block_xyz)
    live.create()
    written = downsample_batch(src, spec, live, list(spec.grid.origins()), "mean")
    live.close()
    live = Directory.open(str(tmp_path / "live.blockfs"))

    assert np.array_equal(batched[:, :, :], reference_mean(full, (2, 2, 2)))
    assert np.array_equal(live[:, :, :], batched[:, :, :])
    assert written == len(batched) == spec.grid.n_blocks - 1
    assert not batched.has_block(0, 0, 0)  # every source absent: stays absent, no zero block
    assert batched.has_block(16, 16, 0)  # partly absent: absent voxels count as the zeros they read as


def test_downsample_batch_checks_its_inputs(tmp_path: Path, level0: tuple) -> None:
    src, _ = level0
    levels = plan_levels(src.shape, src.grid.block_xyz, max_levels=2)
    spec = level_spec(src.spec, levels[1])
    live = Directory(*spec.grid.extent_xyz, spec.dtype, str(tmp_path / "x.blockfs"), *spec.grid.block_xyz)
    live.create()
    with pytest.raises(ConfigurationError, match="mode"):
        downsample_batch(src, spec, live, [], "median")
    with pytest.raises(ConfigurationError, match="extent"):
        downsample_batch(src, spec, live, [], step_xyz=(3, 3, 3))
    bare = VolumeSpec(spec.grid, spec.dtype)
    with pytest.raises(ConfigurationError, match="step_xyz"):
        downsample_batch(src, bare, live, [])
    with pytest.raises(IndexError):
        downsample_batch(src, spec, live, [(3, 0, 0)])
    live.close()


# ----------------------------------------------------------------- pyramids
def test_build_pyramid_levels_match_the_reference_chain(tmp_path: Path, level0: tuple) -> None:
    src, full = level0
    out = tmp_path / "pyr"
    pyramid = build_pyramid(src.directory_filename, str(out), (2, 2, 5), blocks_per_batch=3, n_threads=2)
    assert [lv.key for lv in pyramid.levels] == ["1_1_1", "2_2_1", "4_4_2", "8_8_4"]
    expected = full
    for i, level in enumerate(pyramid.levels):
        if i:
            expected = reference_mean(expected, tuple(reversed(level.step_xyz)))
        d = pyramid.open(i)
        assert d.grid.extent_xyz == level.extent_xyz and d.grid.block_xyz == (16, 16, 8)
        assert np.array_equal(d[:, :, :], expected), level.key
    assert not pyramid.open(1).has_block(0, 0, 0)
    assert sorted(os.listdir(out)) == ["1_1_1", "2_2_1", "4_4_2", "8_8_4", "info"]
    assert not [f for f in os.listdir(out / "2_2_1") if "fragment" in f or ".tmp-" in f]
    # level 0 is hard-linked, not copied
    assert os.path.samefile(out / "1_1_1" / "l0.blockfs.0", src.block_filenames[0])

    info = json.loads((out / "info").read_text())
    assert info["type"] == "image" and info["data_type"] == "uint16" and info["downsampling"] == "mean"
    assert [s["resolution"] for s in info["scales"]] == [[2, 2, 5], [4, 4, 5], [8, 8, 10], [16, 16, 20]]
    assert [s["blockfs"] for s in info["scales"]][1] == "2_2_1/precomputed.blockfs"
    assert Pyramid.from_info(str(out)) == pyramid
    d1 = pyramid.open(1)
    assert d1.metadata["pyramid"]["step_xyz"] == [2, 2, 1] and d1.metadata["pyramid"]["mode"] == "mean"


def test_a_finished_pyramid_is_kept_unless_overwrite(tmp_path: Path, level0: tuple) -> None:
    src, _ = level0
    out = str(tmp_path / "pyr")
    build_pyramid(src.directory_filename, out, max_levels=3)
    assert os.path.isdir(os.path.join(out, "4_4_4"))
    with pytest.raises(VolumeExistsError):
        build_pyramid(src.directory_filename, out, max_levels=2)
    pyramid = build_pyramid(src.directory_filename, out, max_levels=2, overwrite=True)
    assert len(Pyramid.from_info(out).levels) == 2 == len(pyramid.levels)
    assert sorted(os.listdir(out)) == ["1_1_1", "2_2_2", "info"]  # the old third level is gone
    assert np.array_equal(pyramid.open(0)[:, :, :], src[:, :, :])


def test_an_interrupted_build_resumes(tmp_path: Path, level0: tuple) -> None:
    src, full = level0
    out = str(tmp_path / "pyr")
    plan = plan_pyramid(src.directory_filename, out, max_levels=3)
    spec = level_spec(src.spec, plan.levels[1])
    os.makedirs(os.path.dirname(plan.path(1)))
    batches = plan_downsample_batches(spec, -(-spec.grid.n_blocks // 4))
    with BatchWriter(plan.path(1), spec, 0) as writer:  # batch 0 committed before the "crash"
        downsample_batch(src, spec, writer, batches[0])
    with pytest.raises(RuntimeError):
        with BatchWriter(plan.path(1), spec, 1) as writer:  # batch 1 dies half way
            downsample_batch(src, spec, writer, batches[1][:1])
            raise RuntimeError("killed")
    mtime = os.stat(plan.path(1) + ".0").st_mtime_ns
    pyramid = build_pyramid(src.directory_filename, out, max_levels=3, blocks_per_batch=4)
    assert os.stat(pyramid.path(1) + ".0").st_mtime_ns == mtime  # batch 0 was not redone
    assert np.array_equal(pyramid.open(1)[:, :, :], reference_mean(full, (2, 2, 2)))


def test_segmentation_pyramid_uses_the_mode(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    labels = np.array([0, 11, 2**33, 2**63 + 5], np.uint64)
    data = labels[rng.integers(0, 4, (13, 20, 27))]
    src = write_volume(tmp_path / "seg.blockfs", data, (8, 8, 4))
    pyramid = build_pyramid(src.directory_filename, str(tmp_path / "pyr"), (1, 1, 1), mode="mode", level0="copy")
    assert pyramid.layer_type == "segmentation"
    expected = data
    for i, level in enumerate(pyramid.levels):
        if i:
            expected = reference_mode(expected, tuple(reversed(level.step_xyz)))
        assert np.array_equal(pyramid.open(i)[:, :, :], expected), level.key
    assert not os.path.samefile(pyramid.path(0), src.directory_filename)  # copied


def test_level0_by_reference(tmp_path: Path, level0: tuple) -> None:
    src, full = level0
    pyramid = build_pyramid(src.directory_filename, str(tmp_path / "pyr"), max_levels=2, level0="reference")
    assert pyramid.paths[0] == os.path.join("..", "l0.blockfs")
    assert not (tmp_path / "pyr" / "1_1_1").exists()
    assert np.array_equal(Pyramid.from_info(str(tmp_path / "pyr")).open(0)[:, :, :], full)


def test_pyramid_command(tmp_path: Path, level0: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    from blockfs_tasks.cli import pyramid_main

    src, _ = level0
    out = tmp_path / "cmd"
    argv = [
        src.directory_filename, str(out), "--resolution", "1", "1", "3", "--factors", "2,2,1", "--factors", "2,2,2",
        "--silent",
    ]
    assert pyramid_main(argv) == 0
    assert "4_4_2" in capsys.readouterr().out
    assert [s["key"] for s in json.loads((out / "info").read_text())["scales"]] == ["1_1_1", "2_2_1", "4_4_2"]
    assert pyramid_main(argv) == 1  # exists
    assert pyramid_main([*argv, "--overwrite", "--type", "segmentation"]) == 0
    assert json.loads((out / "info").read_text())["type"] == "segmentation"


def test_pyramid_and_serving_never_import_luigi(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import blockfs_tasks.pyramid, blockfs_tasks.serve, blockfs_tasks.serve.server, blockfs_tasks.serve.static\n"
        "print(sorted(m for m in sys.modules if m == 'luigi' or m.startswith('luigi.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
