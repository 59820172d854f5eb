"""Serving a version (VOL@TAG) and /provenance: cloud-volume reads both over HTTP."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core.provenance import processing_step, with_step
from blockfs_tasks.serve import open_precomputed
from blockfs_tasks.serve.server import BackgroundServer

cloudvolume = pytest.importorskip("cloudvolume", reason="cloud-volume is not installed (pip install cloud-volume)")


def _volume(tmp_path: Path) -> str:
    path = str(tmp_path / "vol.blockfs")
    step = processing_step("test.Build", {"source": "synthetic:8x16x16"}, "Build_x_123")
    md = with_step({}, step, ["synthetic:8x16x16"])
    d = Directory(16, 16, 8, np.uint16, path, x_block_size=8, y_block_size=8, z_block_size=8, metadata=md)
    d.create()
    d.write_block(np.full((8, 8, 8), 7, np.uint16), 0, 0, 0)
    d.close()
    return path


def test_serve_a_tag_while_the_working_volume_moves_on(tmp_path: Path) -> None:
    from blockfs_tasks.core import versions

    path = _volume(tmp_path)
    cid = Directory.open(path).commit("first light")
    versions.create_ref(path, versions.TAGS, "v1")
    d = Directory.open(path, "r+")
    d.write_block(np.full((8, 8, 8), 9, np.uint16), 0, 0, 0)
    d.close()
    with BackgroundServer(open_precomputed(path + "@v1")) as server:
        vol = cloudvolume.CloudVolume(server.base_url, fill_missing=True, progress=False, cache=False, parallel=1)
        assert int(np.asarray(vol[0:8, 0:8, 0:8]).max()) == 7  # the tag, not the working volume's 9
        prov = vol.provenance
        assert prov["sources"] == ["synthetic:8x16x16"]
        assert prov["processing"][0]["task_id"] == "Build_x_123"
        assert prov["processing"][-1]["commit"] == cid and cid in prov["description"]
        with urllib.request.urlopen(server.base_url + "/provenance") as r:
            assert r.headers["Content-Type"] == "application/json"
            assert json.loads(r.read())["owners"] == []
    with BackgroundServer(open_precomputed(path)) as server:
        vol = cloudvolume.CloudVolume(server.base_url, fill_missing=True, progress=False, cache=False, parallel=1)
        assert int(np.asarray(vol[0:8, 0:8, 0:8]).max()) == 9
        assert vol.provenance["processing"][0]["method"] == "test.Build"
