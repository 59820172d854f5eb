"""Fixtures of the remote tests: moto's S3 server and a counting proxy, a Range web server, volumes in a bucket."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blockfs_tasks.core import Directory

from .servers import S3_ENV, CountingProxy, MotoServer, RangeServer, s3_options

pytest.importorskip("s3fs")


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto_server process on 127.0.0.1 for the session (each test uses its own bucket)."""
    for k, v in S3_ENV.items():
        os.environ.setdefault(k, v)
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(moto: MotoServer) -> Iterator[CountingProxy]:
    """A counting proxy in front of moto: reads through it are counted request by request."""
    p = CountingProxy(moto.port)
    yield p
    p.stop()


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    """A new, empty bucket: its name."""
    import s3fs

    name = f"t-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_options(moto.endpoint), skip_instance_cache=True).mkdir(name)
    return name


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    """An s3fs filesystem on moto (for the tests' own uploads and checks)."""
    import s3fs

    return s3fs.S3FileSystem(**s3_options(moto.endpoint), skip_instance_cache=True)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[RangeServer]:
    """A Range-capable web server over tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    server = RangeServer(root)
    yield server
    server.stop()


def make_volume(path: Path, shape_xyz: tuple[int, int, int] = (100, 90, 70), block: int = 32,
                dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """A local volume with edge blocks on every axis and a few blocks left unwritten; its (z, y, x) data."""
    rng = np.random.default_rng(seed)
    x, y, z = shape_xyz
    data = (rng.integers(0, 1000, (z, y, x)) + np.arange(x)).astype(dtype)
    d = Directory(x, y, z, dtype, str(path), block, block, block)
    d.create()
    for i, (bx, by, bz) in enumerate(
        (bx, by, bz) for bz in range(0, z, block) for by in range(0, y, block) for bx in range(0, x, block)
    ):
        if i % 7 == 3:
            data[bz : bz + block, by : by + block, bx : bx + block] = 0  # never written: reads as zeros
            continue
        d.write_block(data[bz : bz + block, by : by + block, bx : bx + block], bx, by, bz)
    d.close()
    return data
