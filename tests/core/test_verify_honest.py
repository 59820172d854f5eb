"""blockfs-verify recomputes every checksum its format has and says plainly what it could check."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from v1_writer import write_v1_volume

from blockfs_tasks.cli import info_main, verify_main
from blockfs_tasks.core import Directory, directory_file
from blockfs_tasks.core import format as fmt

from .helpers import random_block


def _volume(path: Path, shape_zyx: tuple[int, int, int], block: int) -> Directory:
    data = random_block(shape_zyx, "uint16", 1)
    d = Directory(shape_zyx[2], shape_zyx[1], shape_zyx[0], np.uint16, path, block, block, block)
    d.create()
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        d.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    d.close()
    return d


def test_verify_recomputes_the_crc_of_a_memory_mapped_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before 2.1.0, a flipped bit in a large volume's index made a block read as zeros and verify exit 0."""
    path = tmp_path / "v.blockfs"
    _volume(path, (16, 16, 16), 2)  # 512 blocks
    contents = fmt.read_directory(path)
    index = np.array(contents.index)
    path.write_bytes(
        fmt.encode_directory_header(contents.spec, contents.block_files, index, page_entries=100) + index.tobytes()
    )
    monkeypatch.setattr(directory_file, "MMAP_THRESHOLD", 0)  # the path of volumes over ~3.36 M blocks
    raw = bytearray(path.read_bytes())
    dpos = struct.unpack_from("<I", raw, 12)[0]
    raw[dpos + 20 * 250 + 12] ^= 1  # position 250's "file": present -> absent
    path.write_bytes(bytes(raw))
    assert verify_main([str(path), "--silent"]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert bad == [f"BAD {path}: index page 2 (block positions 200..299) does not match its CRC-32C"]
    assert "412 blocks good, 0 bad; 1 index pages corrupt" in out
    assert "format 2.1.0: CRC-32C of the header and metadata, of each index page and of each block" in out


def test_verify_of_format_1_says_decode_check_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = write_v1_volume(tmp_path / "v.blockfs", random_block((8, 8, 16), "uint8", 2), (8, 8, 8))
    assert verify_main([v.path, "--silent"]) == 0
    out = capsys.readouterr().out
    assert "format 1.0.0: decode check only" in out and "2 blocks good, 0 bad" in out
    assert info_main([v.path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checksums"].startswith("format 1.0.0: decode check only")
    assert info["codec"] == {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1}


def test_verify_of_an_empty_volume_says_it_checked_no_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = Directory(10, 10, 10, np.uint8, tmp_path / "e.blockfs", 4, 4, 4)
    d.create()
    d.close()
    assert verify_main([str(tmp_path / "e.blockfs"), "--silent"]) == 0
    assert "0 blocks good, 0 bad (the volume has no blocks: only its directory was checked)" in capsys.readouterr().out


def test_verify_and_info_of_a_corrupt_header_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.blockfs"
    _volume(path, (8, 8, 8), 4)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b'"XExtent": 8') + 11] = ord("9")
    path.write_bytes(bytes(raw))
    for main in (verify_main, info_main):
        assert main([str(path), "--silent"] if main is verify_main else [str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "header and JSON metadata do not match their CRC-32C" in err[0]
