"""blockfs-tune on a real volume: every setting measured, the volume's own one marked; errors exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from blockfs_tasks.core import Directory


def _volume(path: Path, blocks: bool = True) -> str:
    d = Directory(64, 64, 32, np.uint16, path, 32, 32, 32, compression_level=2)
    d.create()
    if blocks:
        rng = np.random.default_rng(1)
        for x, y, z in d.grid.origins():
            d.write_block(np.cumsum(rng.integers(0, 4, (32, 32, 32)), axis=2).astype(np.uint16), x, y, z)
    d.close()
    return str(path)


def _tune(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from blockfs_tasks.cli import tune_main; sys.exit(tune_main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_tune_measures_each_setting_on_the_volume(tmp_path: Path) -> None:
    vol = _volume(tmp_path / "v.blockfs")
    done = _tune(vol, "--blocks", "3", "--levels", "1", "2", "--cnames", "zstd", "lz4", "--json", "--cores", "3")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["blocks"] == 3 and report["cores"] == 3
    settings = {(r["cname"], r["clevel"], r["shuffle"]): r for r in report["settings"]}
    assert len(settings) == 8
    assert [k for k, r in settings.items() if r["current"]] == [("zstd", 2, "byte")]
    r = settings[("lz4", 1, "bit")]
    # the projection is 3 x the unrounded per-core speed; the report rounds both (to 1 and to 0.1 MB/s)
    assert abs(r["ingest_mbps"] - 3 * r["encode_mbps_per_core"]) <= 0.5 + 3 * 0.05
    text = _tune(vol, "--blocks", "2", "--levels", "2", "--cnames", "zstd", "--silent")
    assert text.returncode == 0 and "zstd-2 byte    *" in text.stdout


def test_tune_refuses_an_empty_volume_and_a_missing_file(tmp_path: Path) -> None:
    empty = _tune(_volume(tmp_path / "e.blockfs", blocks=False), "--silent")
    assert empty.returncode == 1 and "no blocks written" in empty.stderr
    missing = _tune(str(tmp_path / "nope.blockfs"), "--silent")
    assert missing.returncode == 1 and "nope.blockfs" in missing.stderr
