"""Tests for blockfs_tasks.ingest.synthetic (small volumes, each well under 1 s)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.ingest.synthetic import (
    DEFAULT_CELL_DENSITY,
    SUPPORTED_DTYPES,
    SyntheticVolume,
)

SHAPE = (40, 64, 48)
# ~40 cells in a 40x64x48 volume (the default density would give < 1).
DENSE = 3.0e-4


def _vol(**kwargs: object) -> SyntheticVolume:
    kwargs.setdefault("cell_density", DENSE)
    return SyntheticVolume(SHAPE, **kwargs)  # type: ignore[arg-type]  # any keyword, checked at run time


def test_defaults_and_frozen() -> None:
    vol = SyntheticVolume((4, 8, 8))
    assert vol.dtype == "uint16"
    assert vol.seed == 0
    assert vol.background == (100, 200)
    assert vol.cell_density == DEFAULT_CELL_DENSITY
    assert round(DEFAULT_CELL_DENSITY * 512 * 1024 * 1024) == 3000
    with pytest.raises(dataclasses.FrozenInstanceError):
        vol.seed = 1  # type: ignore[misc]  # frozen: the assignment must fail
    assert vol == SyntheticVolume((4, 8, 8))
    assert hash(vol) == hash(SyntheticVolume([4, 8, 8]))  # type: ignore[arg-type]  # a list on purpose


def test_no_luigi_import() -> None:
    root = Path(__file__).resolve().parents[1]
    code = "import sys, blockfs_tasks.ingest.synthetic; sys.exit('luigi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=root, check=False)
    assert result.returncode == 0


def test_deterministic_same_seed() -> None:
    a = _vol(seed=3).slab(0, SHAPE[0])
    b = _vol(seed=3).slab(0, SHAPE[0])
    np.testing.assert_array_equal(a, b)


def test_different_seed_differs() -> None:
    a = _vol(seed=1).slab(0, SHAPE[0])
    b = _vol(seed=2).slab(0, SHAPE[0])
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
@pytest.mark.parametrize(
    "bounds", [[0, 40], [0, 1, 2, 40], [0, 7, 13, 29, 40], list(range(41))]
)
def test_slab_split_invariance(dtype: str, bounds: list[int]) -> None:
    vol = _vol(dtype=dtype, seed=7)
    whole = vol.slab(0, SHAPE[0])
    parts = [vol.slab(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=0), whole)


def test_split_invariance_across_working_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import blockfs_tasks.ingest.synthetic as mod

    vol = _vol(seed=5)
    whole = vol.slab(0, SHAPE[0])
    monkeypatch.setattr(mod, "_CHUNK_VOXELS", 3 * SHAPE[1] * SHAPE[2])
    np.testing.assert_array_equal(vol.slab(0, SHAPE[0]), whole)
    np.testing.assert_array_equal(vol.slab(5, 22), whole[5:22])


def test_plane_matches_slab() -> None:
    vol = _vol(seed=4)
    whole = vol.slab(0, SHAPE[0])
    for z in (0, 17, SHAPE[0] - 1):
        np.testing.assert_array_equal(vol.plane(z), whole[z])
    assert vol.plane(3).shape == SHAPE[1:]


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_dtype_shape_and_range(dtype: str) -> None:
    vol = _vol(dtype=dtype)
    s = vol.slab(3, 11)
    assert s.shape == (8,) + SHAPE[1:]
    assert s.dtype == np.dtype(dtype)
    if np.issubdtype(s.dtype, np.integer):
        info = np.iinfo(s.dtype)
        assert s.min() >= info.min and s.max() <= info.max
    else:
        assert np.isfinite(s).all() and s.min() >= 0
    assert vol.slab(5, 5).shape == (0,) + SHAPE[1:]


def test_dtype_accepts_numpy_dtype_objects() -> None:
    u8 = SyntheticVolume((2, 3, 4), dtype=np.uint8)  # type: ignore[arg-type]  # numpy types are accepted too
    f32_dtype: object = np.dtype("float32")
    f32 = SyntheticVolume((2, 3, 4), dtype=f32_dtype)  # type: ignore[arg-type]  # numpy dtypes are accepted too
    assert u8.dtype == "uint8"
    assert f32.dtype == "float32"


def test_background_level_in_cell_free_volume() -> None:
    vol = _vol(cell_density=0.0)
    assert vol.n_cells == 0
    s = vol.slab(0, SHAPE[0]).astype(np.float64)
    # Smooth background spans ~[100, 200]; noise sigma is ~7-10 ADU.
    assert 100 <= s.mean() <= 200
    assert 80 <= np.percentile(s, 1) and np.percentile(s, 99) <= 225
    assert s.max() < 300


def test_background_range_is_respected() -> None:
    s = _vol(cell_density=0.0, background=(1000, 1100)).slab(0, SHAPE[0])
    assert 1000 <= s.mean() <= 1100


def test_uint8_is_scaled_down() -> None:
    s16 = _vol(dtype="uint16", seed=9).slab(0, 10).astype(np.float64)
    s8 = _vol(dtype="uint8", seed=9).slab(0, 10).astype(np.float64)
    ratio = np.median(s16) / np.median(s8)
    assert 14 <= ratio <= 18


def test_cells_present() -> None:
    vol = _vol(seed=2)
    assert vol.n_cells == round(DENSE * np.prod(SHAPE))
    cells = vol.cells
    assert cells.shape == (vol.n_cells, 5)
    assert not cells.flags.writeable
    assert (cells[:, 3] >= 1.5).all() and (cells[:, 3] <= 4.0).all()
    assert (cells[:, 4] >= 1000).all() and (cells[:, 4] <= 4000).all()
    s = vol.slab(0, SHAPE[0])
    assert s.max() > 1000  # far above the ~100-200 background
    # The brightest voxel is near a cell centre.
    z, y, x = np.unravel_index(np.argmax(s), s.shape)
    d = np.sqrt(((cells[:, :3] - np.array([z, y, x])) ** 2).sum(axis=1))
    assert d.min() < 3.0 * cells[np.argmin(d), 3]
    # Cell centres are brighter than cell-free reference data.
    bg = _vol(seed=2, cell_density=0.0).slab(0, SHAPE[0])
    zc, yc, xc = np.clip(np.round(cells[:, :3]).astype(int), 0, np.array(SHAPE) - 1).T
    assert np.median(s[zc, yc, xc].astype(np.float64) - bg[zc, yc, xc]) > 300


@pytest.mark.parametrize(
    "shape, match",
    [
        ((4, 8), "3 dimensions"),
        ((4, 8, 8, 1), "3 dimensions"),
        ((0, 8, 8), "positive"),
        ((4, -1, 8), "positive"),
        ((4, 8.0, 8), "integer"),
        ((4, True, 8), "integer"),
        (16, "sequence"),
        ("abc", "sequence"),
    ],
)
def test_bad_shape(shape: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticVolume(shape)  # type: ignore[arg-type]  # bad shapes on purpose


@pytest.mark.parametrize("dtype", ["int16", "float64", "uint32", "bogus"])
def test_bad_dtype(dtype: str) -> None:
    with pytest.raises(ValueError) as info:
        SyntheticVolume((2, 3, 4), dtype=dtype)
    msg = str(info.value)
    assert dtype in msg
    for ok in SUPPORTED_DTYPES:
        assert ok in msg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"cell_density": -0.1}, "cell_density"),
        ({"cell_density": float("nan")}, "cell_density"),
        ({"cell_density": "lots"}, "cell_density"),
        ({"background": (200, 100)}, "background"),
        ({"background": (-1, 100)}, "background"),
        ({"background": (100,)}, "background"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticVolume((2, 3, 4), **kwargs)  # type: ignore[arg-type]  # bad values on purpose


@pytest.mark.parametrize("z0, z1", [(-1, 5), (0, 41), (10, 5), (40, 41)])
def test_bad_slab_bounds(z0: int, z1: int) -> None:
    with pytest.raises(ValueError, match=r"0 <= z0 <= z1 <= 40"):
        _vol().slab(z0, z1)


@pytest.mark.parametrize("z", [-1, 40, 100])
def test_bad_plane_index(z: int) -> None:
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        _vol().plane(z)
