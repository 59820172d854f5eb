"""Helpers shared by the core tests: deterministic data, golden volumes, scripts in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent.parent
V1_DATA = TESTS / "data" / "blockfs-v1"
V1_CASES = sorted(p.name for p in V1_DATA.iterdir() if (p / "precomputed.blockfs").exists())

ALL_DTYPES = (
    "uint8", "uint16", "uint32", "uint64",
    "int8", "int16", "int32", "int64",
    "float32", "float64",
)
ALL_COMPRESSORS = ("zstd", "lz4", "lz4hc", "blosclz", "zlib", "snappy")

# A subprocess that deadlocks must fail its test, not hang the suite.
SCRIPT_TIMEOUT = 120


def compressor_param(name: str) -> object:
    """A pytest param for a Blosc compressor, skipped where numcodecs lacks it (snappy)."""
    from numcodecs import blosc

    missing = name not in blosc.list_compressors()
    return pytest.param(
        name, marks=pytest.mark.skipif(missing, reason=f"numcodecs here has no Blosc {name}"), id=name
    )


def random_block(shape: tuple[int, ...], dtype: object, seed: object) -> np.ndarray:
    """A deterministic array for ``seed``: half a smooth ramp, half random over the dtype's range.

    Floats also get NaN, infinities and -0.0, so a round trip must keep every bit.
    """
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dt.kind == "f":
        out = (rng.standard_normal(shape) * 1e3).astype(dt)
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).max, np.finfo(dt).tiny], dt)
        n = min(out.size, len(specials))
        out.flat[:n] = specials[:n]
    else:
        info = np.iinfo(dt)
        out = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    ramp = (np.arange(out.size) % 50).astype(dt).reshape(shape)
    mask = rng.random(shape) < 0.5
    if dt.kind == "f":
        mask.flat[:6] = False
    out[mask] = ramp[mask]
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bytes (so NaNs and -0.0 count)."""
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


def run_python(
    source: str, *args: str, cwd: Path, timeout: float = SCRIPT_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as the script ``cwd/script.py`` in a fresh interpreter.

    A real file, so that ``spawn`` children re-import it as ``__main__`` as they
    do for a user's script. A timeout fails the test instead of hanging it.
    """
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(source))
    try:
        result = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"script timed out after {timeout} s (deadlock?)\nstdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    if check and result.returncode != 0:
        pytest.fail(f"script exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result
