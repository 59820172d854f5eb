"""blockfs-version, blockfs-compact and blockfs-delete: the worked example of the README, as a test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import compact_main, delete_main, info_main, version_main
from blockfs_tasks.core import Directory


def _write(path: str, value: int, *origins: tuple[int, int, int]) -> None:
    d = Directory.open(path, "r+")
    for origin in origins:
        d.write_block(np.random.default_rng(value).integers(0, 65535, (16, 16, 16), np.uint16), *origin)
    d.close()


def test_commit_tag_fix_diff_log_compact_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vol = str(tmp_path / "vol.blockfs")
    d = Directory(32, 32, 32, np.uint16, vol, x_block_size=16, y_block_size=16, z_block_size=16)
    d.create()
    d.close()
    _write(vol, 1, (0, 0, 0), (16, 0, 0))
    assert version_main(["commit", vol, "-m", "first light"]) == 0
    first = capsys.readouterr().out.strip()
    assert version_main(["tag", vol, "v1"]) == 0 and capsys.readouterr().out.strip() == first
    _write(vol, 2, (16, 0, 0))  # fix a block
    assert version_main(["diff", vol, "v1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["16 0 0", "1 block(s) differ"]
    assert version_main(["commit", vol, "-m", "fix"]) == 0
    second = capsys.readouterr().out.strip()
    assert version_main(["log", vol, "--json"]) == 0
    log = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["Id"], c["Message"], c["Changed"]) for c in log] == [(second, "fix", 1), (first, "first light", 2)]
    assert version_main(["diff", vol, "v1", "main", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"count": 1, "origins_xyz": [[16, 0, 0]]}
    assert version_main(["tag", vol, "v1", "main"]) == 1  # exists
    assert "exists" in capsys.readouterr().err
    # rewrite, never committed: dead bytes, given back by compaction
    _write(vol, 3, (0, 0, 0))
    _write(vol, 4, (0, 0, 0))
    assert info_main([vol, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dead_bytes"] > 8000 and info["commits"] == 2
    assert compact_main([vol, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reclaimed_bytes"] >= 8192 and report["dead_bytes"] < 4096
    assert delete_main([vol, "--x0", "0", "--x1", "16"]) == 0
    assert capsys.readouterr().out.strip() == "1 block(s) cleared"
    assert delete_main([vol, "--x0", "3"]) == 1
    assert "block grid" in capsys.readouterr().err
    assert version_main(["status", vol]) == 0
    assert "changed  1 block(s)" in capsys.readouterr().out
    assert version_main(["checkout", vol, "v1"]) == 1  # dirty
    assert version_main(["checkout", vol, "v1", "--force"]) == 0
    capsys.readouterr()
    assert version_main(["branch", vol]) == 0
    assert capsys.readouterr().out.split() == ["main", second[:12]]  # v1 is a tag: nothing checked out as a branch
    assert version_main(["tag", vol, "-d", "v1"]) == 0
