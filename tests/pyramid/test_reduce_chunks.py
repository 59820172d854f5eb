"""The whole-window mean reduced in cache-sized z slices gives the general path's bytes."""

from __future__ import annotations

import numpy as np
import pytest

from blockfs_tasks.pyramid import reduce


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "int32"])
@pytest.mark.parametrize("step", [(2, 2, 2), (1, 2, 2), (3, 3, 3)])
def test_sliced_mean_equals_the_general_path(monkeypatch: pytest.MonkeyPatch, dtype: str, step: tuple) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    region = rng.integers(info.min, info.max, (12 * step[0], 6 * step[1], 10 * step[2]), dtype=dtype, endpoint=True)
    monkeypatch.setattr(reduce, "CHUNK_BYTES", region[0].nbytes * 2)  # several slices, one odd-sized last one
    got = reduce.downsample_mean(region, step)
    want = reduce._mean_general(region, step)
    assert got.dtype == region.dtype
    np.testing.assert_array_equal(got, want)
