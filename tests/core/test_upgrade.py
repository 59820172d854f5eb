"""blockfs-upgrade: 1.0.0 and 2.0.0 volumes become 2.1.0 with checksums, decoding each block first (issue 9 item 8)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.cli import upgrade_main, verify_main
from blockfs_tasks.core import Directory, VolumeBusyError
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.errors import VolumeExistsError
from blockfs_tasks.core.upgrade import upgrade_volume

from .helpers import TESTS, V1_DATA, same

V2_DATA = TESTS / "data" / "blockfs-v2.0.0"


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, copy_function=shutil.copyfile)
    for f in dest.iterdir():
        f.chmod(0o644)
    return dest / "precomputed.blockfs"


def _block_files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {f.name: (f.stat().st_ino, f.read_bytes()) for f in folder.glob("precomputed.blockfs.*")}


@pytest.mark.parametrize(
    "source", [V1_DATA / "v1_uint16_zstd", V1_DATA / "v1_uint8_lz4_sparse", V2_DATA / "v2_uint16_zstd_live"]
)
def test_upgrade_in_place(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(source, tmp_path / "v")
    expected = np.load(source / "expected.npy")
    before = Directory.open(path)
    blocks = _block_files(tmp_path / "v")
    assert upgrade_main([str(path), "--silent"]) == 0
    out = capsys.readouterr().out
    assert f"{len(before)} blocks decoded, 0 bad; wrote {path} as format 2.1.0" in out
    d = Directory.open(path)
    assert d.version == "2.1.0" and same(d[:], expected) and d.metadata == before.metadata
    assert d.spec.same_volume(before.spec) and len(d) == len(before)
    assert _block_files(tmp_path / "v") == blocks  # shared, not copied, not touched
    assert sorted(os.listdir(tmp_path / "v")) == sorted(os.listdir(source))  # no temporaries left
    assert verify_main([str(path), "--silent"]) == 0
    assert "format 2.1.0: CRC-32C of the header" in capsys.readouterr().out
    # a rerun does nothing
    raw = path.read_bytes()
    assert upgrade_main([str(path), "--silent"]) == 0
    assert "already format 2.1.0; nothing to do" in capsys.readouterr().out and path.read_bytes() == raw


def test_upgrade_to_a_new_file_in_another_folder(tmp_path: Path) -> None:
    path = _copy(V2_DATA / "v2_float32_lz4_batch", tmp_path / "old")
    old = path.read_bytes()
    (tmp_path / "new").mkdir()
    new = tmp_path / "new" / "vol.blockfs"
    report = upgrade_volume(str(path), str(new), n_threads=2)
    assert report.published and report.from_version == "2.0.0" and path.read_bytes() == old
    d = Directory.open(new)
    assert d.version == "2.1.0" and same(d[:], np.load(V2_DATA / "v2_float32_lz4_batch" / "expected.npy"))
    names = ["precomputed.blockfs.0", "precomputed.blockfs.1"]
    assert fmt.read_directory(new).block_files == names
    for name in names:  # hard links: the same bytes, not copies
        assert (tmp_path / "new" / name).stat().st_ino == (tmp_path / "old" / name).stat().st_ino
    first = new.read_bytes()
    assert upgrade_volume(str(path), str(new)).published and new.read_bytes() == first  # rerun: same result


def test_upgrade_refuses_to_replace_an_unrelated_file(tmp_path: Path) -> None:
    path = _copy(V1_DATA / "v1_uint16_zstd", tmp_path / "v")
    other = tmp_path / "precious.txt"
    other.write_text("keep me")
    with pytest.raises(VolumeExistsError, match="precious.txt"):
        upgrade_volume(str(path), str(other))
    assert other.read_text() == "keep me"


def test_a_block_that_does_not_decode_is_reported_not_checksummed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(V1_DATA / "v1_uint16_zstd", tmp_path / "v")
    d = Directory.open(path)
    x, y, z = 32, 64, 32
    entry = d.index[d.grid.position(x, y, z)]
    block_file = Path(d.block_filenames[int(entry["file"]) - 1])
    raw = bytearray(block_file.read_bytes())
    raw[int(entry["offset"]) + 12] ^= 0x10  # the frame's compressed size: it no longer decodes
    block_file.write_bytes(bytes(raw))
    directory = path.read_bytes()
    assert upgrade_main([str(path), "--silent"]) == 1
    out = capsys.readouterr().out
    assert out.count("BAD ") == 1 and f"({x}, {y}, {z})" in out and "nothing was written" in out
    assert path.read_bytes() == directory  # still the 1.0.0 directory
    assert upgrade_main([str(path), "--silent", "--drop-bad"]) == 1
    assert "the 1 bad blocks were left out and read as zeros" in capsys.readouterr().out
    d = Directory.open(path)
    assert d.version == "2.1.0" and not d.has_block(x, y, z)
    assert verify_main([str(path), "--silent"]) == 0


def test_upgrade_refuses_a_volume_being_written(tmp_path: Path) -> None:
    d = Directory(16, 16, 16, np.uint8, tmp_path / "w.blockfs", 8, 8, 8)
    d.create()
    d.write_block(np.ones((8, 8, 8), np.uint8), 0, 0, 0)
    with pytest.raises(VolumeBusyError, match="journal"):
        upgrade_volume(str(tmp_path / "w.blockfs"))
    d.close()


def test_an_upgrade_killed_at_its_rename_leaves_the_old_volume_and_a_rerun_finishes(tmp_path: Path) -> None:
    strace = shutil.which("strace") or ("/usr/bin/strace" if os.path.exists("/usr/bin/strace") else None)
    if strace is None:
        pytest.skip("strace is not installed: cannot kill the upgrade at its rename")
    path = _copy(V1_DATA / "v1_uint8_lz4_sparse", tmp_path / "v")
    old = path.read_bytes()
    code = f"from blockfs_tasks.cli import upgrade_main; upgrade_main([{str(path)!r}, '--silent'])"
    probe = subprocess.run([strace, "-f", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode()[:200]}")
    killed = subprocess.run(
        [
            strace,
            "-f",
            "-o",
            os.devnull,
            "-e",
            "inject=rename,renameat,renameat2:signal=SIGKILL",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode != 0
    assert path.read_bytes() == old and Directory.open(path).version == "1.0.0"
    assert upgrade_main([str(path), "--silent"]) == 0  # the rerun sweeps the dead temporary and finishes
    assert Directory.open(path).version == "2.1.0"
    assert sorted(os.listdir(tmp_path / "v")) == sorted(os.listdir(V1_DATA / "v1_uint8_lz4_sparse"))


def test_upgrade_refuses_blocks_committed_only_in_a_writers_journal(tmp_path: Path) -> None:
    """Blocks committed only in a writer's own journal are not left behind by an upgrade."""
    from blockfs_tasks.core.upgrade import upgrade_volume

    path = tmp_path / "v.blockfs"
    d = Directory(64, 64, 64, np.uint8, path, 32, 32, 32)
    d.create()
    d.write_block(np.full((32, 32, 32), 7, np.uint8), 0, 0, 0)
    before = path.read_bytes()
    with pytest.raises(VolumeBusyError, match="being written by this process"):
        upgrade_volume(str(path), str(tmp_path / "new" / "v.blockfs"))
    assert path.read_bytes() == before and not (tmp_path / "new" / "v.blockfs").exists()
    d.close()
    assert Directory.open(path).read_block(0, 0, 0)[0, 0, 0] == 7
