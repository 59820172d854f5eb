"""Shared fixtures of the test suite (golden format 1.0.0 volumes)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

V1_DATA = Path(__file__).resolve().parent / "data" / "blockfs-v1"


def pytest_configure(config: pytest.Config) -> None:
    """Give the test processes a working Ctrl-C even when pytest was started with SIGINT ignored.

    A job started in the background of a non-interactive shell (``cmd &``, nohup, some CI
    runners) inherits SIGINT ignored, and every child would inherit that too: the tests that
    interrupt a tool (strace's ``signal=SIGINT``, ``os.kill(SIGINT)``) could not. A Python
    handler here is reset to the default action in every child at exec.
    """
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def v1_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a golden format 1.0.0 volume into tmp_path (the fixtures stay read-only); return its directory file."""

    def copy(case: str) -> Path:
        dest = tmp_path / "v1-copy" / case
        shutil.copytree(V1_DATA / case, dest)
        return dest / "precomputed.blockfs"

    return copy
