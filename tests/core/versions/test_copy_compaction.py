"""Compaction by copying live frames to new block files (the fallback where holes cannot be punched).

Exercised with ``method="copy"`` on any filesystem. After a copy every ref,
commit and the working volume read exactly as before (same commit ids: they
hash sizes and CRC-32Cs, not offsets); SIGKILL at each rename, link and
unlink of a copying compaction (strace inject) followed by a rerun leaves
every ref at a complete commit whose every block verifies, no dead byte, no
file that nothing names and no temporary file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import compact_main
from blockfs_tasks.core import Directory
from blockfs_tasks.core import versions as V
from blockfs_tasks.core.errors import ConfigurationError, VolumeInUseError
from blockfs_tasks.core.naming import commit_file_name, compaction_plan_name, resolve_block_path, volume_files

from .conftest import ORIGINS, B, N, block, values_of, write
from .test_kill_versions import kill_sweep

COPY = """
import sys
from blockfs_tasks.core import versions
versions.compact(sys.argv[1], grace_seconds=0, method="copy")
print("done", flush=True)
"""


def make_volume(folder: Path) -> str:
    """Every block written, half of them twice in that session, a tagged commit, then the rest rewritten.

    Block file 0 ends with 4 dead frames among 8 live ones (the commit's);
    a dropped branch's commit makes a third kind: unreachable, removed.
    """
    folder.mkdir()
    path = str(folder / "vol.blockfs")
    d = Directory(N * B, N * B, N * B, np.uint16, path, x_block_size=B, y_block_size=B, z_block_size=B)
    d.create()
    d.close()
    d = Directory.open(path, "r+")
    for i, o in enumerate(ORIGINS):
        d.write_block(block(1 + i), *o)
    for i, o in enumerate(ORIGINS[:4]):
        d.write_block(block(11 + i), *o)
    d.close()
    Directory.open(path).commit("all")
    V.create_ref(path, V.TAGS, "v1")
    V.create_ref(path, V.HEADS, "scratch")
    V.checkout(path, "scratch")
    write(path, {ORIGINS[7]: 50})
    Directory.open(path).commit("on scratch")
    V.checkout(path, "main")
    V.delete_ref(path, V.HEADS, "scratch")
    write(path, {o: 11 + i for i, o in enumerate(ORIGINS) if i >= 4})
    Directory.open(path).commit("second")
    return path


def snapshot(path: str) -> dict[str, object]:
    """What every version reads (block by block, each checked), by ref and commit id, and the working volume."""
    out: dict[str, object] = {"WORKING": values_of(path)}
    for kind in (V.HEADS, V.TAGS):
        for name, cid in V.list_refs(path, kind).items():
            assert os.path.exists(commit_file_name(path, cid)), f"{kind}/{name} -> missing commit {cid}"
            out[f"{kind}/{name}"] = (cid, values_of(f"{path}@{cid}"))
    for cid in V.reachable(path):
        out[cid] = values_of(f"{path}@{cid}")
    return out


def named_files(path: str) -> set[str]:
    """Block files that the working volume or any commit file names."""
    sources = [path] + [commit_file_name(path, c) for c in V.commits.commit_ids(path)]
    names: set[str] = set()
    for source in sources:
        names.update(resolve_block_path(path, n) for n in Directory.open(source).block_filenames)
    return names


def allocated(path: str) -> int:
    return sum(os.stat(f).st_blocks * 512 for f in volume_files(path) if not f.endswith(".compaction"))


def test_copy_gives_back_the_dead_bytes_and_every_version_reads_the_same(tmp_path: Path) -> None:
    path = make_volume(tmp_path / "vol")
    before, ids = snapshot(path), V.commits.commit_ids(path)
    usage, disk = V.space_usage(path), allocated(path)
    assert usage.dead_bytes >= 4 * B**3 * 2  # the first frames of blocks 0..3 in file 0
    report = V.compact(path, grace_seconds=0, method="copy")
    assert len(report.commits_removed) == 1
    assert report.reclaimed_bytes >= 0.9 * usage.dead_bytes, report
    assert disk - allocated(path) >= 0.9 * usage.dead_bytes
    assert report.dead_bytes == 0 and V.space_usage(path).dead_bytes == 0
    assert snapshot(path) == before
    assert set(V.commits.commit_ids(path)) == set(ids) - set(report.commits_removed)  # ids kept
    assert any(".compact-" in f for f in named_files(path))  # block file 0's live half was copied
    assert set(volume_files(path)) == named_files(path)  # every replaced file is gone
    again = V.compact(path, grace_seconds=0, method="copy")
    assert again.reclaimed_bytes == 0 and again.dead_bytes == 0 and snapshot(path) == before
    write(path, {ORIGINS[0]: 99})  # a writer after a copy: a new block file, the copies untouched
    assert values_of(path)[ORIGINS[0]] == 99 and snapshot(path)["tags/v1"] == before["tags/v1"]


def test_the_cli_selects_the_method_and_compaction_refuses_an_open_writer(tmp_path: Path, capsys) -> None:
    path = make_volume(tmp_path / "vol")
    d = Directory.open(path, "r+")
    with pytest.raises(VolumeInUseError):
        V.compact(path, method="copy")
    d.close()
    with pytest.raises(ConfigurationError, match="'sideways'"):
        V.compact(path, method="sideways")
    before = snapshot(path)
    assert compact_main([path, "--method", "copy", "--json"]) == 0  # default grace: the old files wait
    report = json.loads(capsys.readouterr().out)
    assert report["reclaimed_bytes"] == 0 and len(report["retired_waiting"]) == 1
    waiting = os.path.join(os.path.dirname(path), report["retired_waiting"][0])
    assert os.path.exists(waiting) and os.path.exists(compaction_plan_name(path)) and snapshot(path) == before
    write(path, {ORIGINS[1]: 77})  # a writer meanwhile: the waiting file is not taken for a torn one of its own
    before["WORKING"][ORIGINS[1]] = 77  # type: ignore[index]
    assert compact_main([path, "--method", "copy", "--grace-seconds", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reclaimed_bytes"] > 0 and report["retired_waiting"] == [] and not os.path.exists(waiting)
    assert not os.path.exists(compaction_plan_name(path)) and snapshot(path) == before


def sweep(tmp_path: Path, syscalls: tuple[str, ...]) -> dict[str, int]:
    make_volume(tmp_path / "base")
    expect = snapshot(str(tmp_path / "base" / "vol.blockfs"))

    def check(path: str, killed: bool, run: object) -> None:
        after = snapshot(path)
        assert after == {k: v for k, v in expect.items() if k in after}, "a version reads otherwise"
        report = V.compact(path, grace_seconds=0, method="copy")
        assert report.dead_bytes == 0, report
        assert snapshot(path) == after
        assert set(volume_files(path)) == named_files(path), "a file nothing names is left"
        assert not os.path.exists(compaction_plan_name(path))

    return kill_sweep(tmp_path, tmp_path / "base", COPY, syscalls, check)


def test_kill_at_every_rename_link_and_unlink_of_a_copy(tmp_path: Path) -> None:
    points = sweep(tmp_path, ("rename", "link", "unlink"))
    # renames: the list, two commit files, the working file (and HEAD); unlinks: commit, old files, list
    assert points["rename"] >= 4 and points["unlink"] >= 3, points


@pytest.mark.slow
def test_kill_at_every_syscall_of_a_copy(tmp_path: Path) -> None:
    points = sweep(tmp_path, ("write", "fsync", "rename", "link", "unlink"))
    assert points["fsync"] >= 5 and points["write"] >= 5, points
