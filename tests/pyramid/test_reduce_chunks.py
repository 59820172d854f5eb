"""The whole-window mean (cache-sized z slices, narrow sums) gives the general path's bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blockfs_tasks.pyramid import reduce


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "int32"])
@pytest.mark.parametrize("step", [(2, 2, 2), (1, 2, 2), (3, 3, 3)])
@pytest.mark.parametrize("range_", ["full", "narrow", "narrow+1"])
def test_sliced_mean_equals_the_general_path(
    monkeypatch: pytest.MonkeyPatch, dtype: str, step: tuple, range_: str
) -> None:
    info = np.iinfo(dtype)
    n = math.prod(step)
    narrow = (int(info.max) - n // 2) // n  # the largest maximum whose window sums fit the dtype itself
    high = {"full": int(info.max), "narrow": narrow, "narrow+1": narrow + 1}[range_]
    rng = np.random.default_rng(3)
    region = rng.integers(max(info.min, -high), high, (12 * step[0], 6 * step[1], 10 * step[2]), dtype=dtype,
                          endpoint=True)
    region.flat[0] = high  # the edge value itself, so the narrow check meets it
    monkeypatch.setattr(reduce, "CHUNK_BYTES", region[0].nbytes * 2)  # several slices, one odd-sized last one
    got = reduce.downsample_mean(region, step)
    want = reduce._mean_general(region, step)
    assert got.dtype == region.dtype
    np.testing.assert_array_equal(got, want)
