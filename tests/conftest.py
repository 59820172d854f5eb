"""Shared fixtures of the test suite (golden format 1.0.0 volumes)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

V1_DATA = Path(__file__).resolve().parent / "data" / "blockfs-v1"


@pytest.fixture
def v1_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a golden format 1.0.0 volume into tmp_path (the fixtures stay read-only); return its directory file."""

    def copy(case: str) -> Path:
        dest = tmp_path / "v1-copy" / case
        shutil.copytree(V1_DATA / case, dest)
        return dest / "precomputed.blockfs"

    return copy
