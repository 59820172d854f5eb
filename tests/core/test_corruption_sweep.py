"""Corruption sweep: flip bytes of a small 2.1.0 volume everywhere; every read is exact or a BlockfsError.

Never wrong data (voxels or metadata), never another exception type. The
default run flips every byte of the directory file (three masks) and of the
block file (one mask) and cuts the directory at every length; ``-m slow``
flips every bit of every byte.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import BlockfsError, Directory

from .helpers import random_block


def _outcome(path: Path, expected: tuple[bytes, dict]) -> str:
    try:
        d = Directory.open(path)
        out = np.zeros(d.shape, d.dtype)
        for x, y, z in d.grid.origins():  # one block at a time: no thread pool per case
            block = d.read_block(x, y, z)
            out[z : z + block.shape[0], y : y + block.shape[1], x : x + block.shape[2]] = block
        got = (out.tobytes(), d.metadata)
    except BlockfsError:
        return "error"
    except Exception as e:  # any exception: the point of the test
        return f"other:{type(e).__name__}:{e}"
    return "exact" if got == expected else "WRONG"


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, tuple[bytes, dict]]:
    """A 12^3 uint16 volume of 27 blocks (4^3), 4 of them absent, with application metadata."""
    data = random_block((12, 12, 12), "uint16", 11)
    path = tmp_path / "v.blockfs"
    d = Directory(12, 12, 12, np.uint16, path, 4, 4, 4, metadata={"voxel_size_um": [1.8, 1.8, 2.0]})
    d.create()
    for i, (x, y, z) in enumerate(d.grid.origins()):
        if i % 7 == 3:
            data[z : z + 4, y : y + 4, x : x + 4] = 0
            continue
        d.write_block(data[z : z + 4, y : y + 4, x : x + 4], x, y, z)
    d.close()
    return path, (data.tobytes(), {"voxel_size_um": [1.8, 1.8, 2.0]})


def _sweep(
    target: Path, volume_path: Path, expected: tuple[bytes, dict], masks: tuple[int, ...], step: int = 1
) -> Counter:
    original = target.read_bytes()
    counts: Counter = Counter()
    failures = []
    try:
        for position in range(0, len(original), step):
            for mask in masks:
                mutated = bytearray(original)
                mutated[position] ^= mask
                target.write_bytes(bytes(mutated))
                outcome = _outcome(volume_path, expected)
                counts[outcome.split(":")[0]] += 1
                if outcome not in ("exact", "error"):
                    failures.append(f"byte {position} ^ {mask:#04x}: {outcome}")
    finally:
        target.write_bytes(original)
    assert not failures, f"{len(failures)} of {sum(counts.values())} mutations: " + "; ".join(failures[:10])
    return counts


def test_every_byte_of_the_directory_file(volume: tuple[Path, tuple[bytes, dict]]) -> None:
    path, expected = volume
    counts = _sweep(path, path, expected, (0x01, 0x80, 0xFF))
    # every byte of a 2.1.0 directory is checked: header, metadata, page table, padding, index
    assert counts == Counter(error=3 * path.stat().st_size)


def test_every_byte_of_the_block_file(volume: tuple[Path, tuple[bytes, dict]]) -> None:
    path, expected = volume
    block_file = Path(f"{path}.0")
    counts = _sweep(block_file, path, expected, (0x04,))
    assert counts == Counter(error=block_file.stat().st_size)


def test_directory_cut_at_every_length(volume: tuple[Path, tuple[bytes, dict]]) -> None:
    path, expected = volume
    original = path.read_bytes()
    try:
        for keep in range(len(original)):
            path.write_bytes(original[:keep])
            assert _outcome(path, expected) == "error", keep
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_every_bit_of_every_file(volume: tuple[Path, tuple[bytes, dict]], tmp_path: Path) -> None:
    path, expected = volume
    bits = tuple(1 << b for b in range(8))
    for target in (path, Path(f"{path}.0")):
        counts = _sweep(target, path, expected, bits)
        assert counts == Counter(error=8 * target.stat().st_size)
    shutil.rmtree(tmp_path, ignore_errors=True)
