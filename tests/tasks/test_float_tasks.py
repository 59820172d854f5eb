"""Float codecs chosen in the Luigi config or on the command line; pyramid levels keep level 0's codec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from blockfs_tasks.core import Directory

from .conftest import luigi_command, luigi_env, write_config


def float_source(path: Path) -> np.ndarray:
    """A 24 x 40 x 36 (z, y, x) float32 .npy with values in [0, 1) and edge blocks at 16-voxel blocks."""
    rng = np.random.default_rng(11)
    z, y, x = np.mgrid[0:24, 0:40, 0:36]
    data = (0.5 + 0.4 * np.sin(x / 5) * np.cos(y / 7) + rng.normal(0, 0.02, (24, 40, 36))).clip(0, 1)
    np.save(path, data.astype(np.float32))
    return data.astype(np.float32)


def test_compression_from_config_and_command_line(tmp_path: Path) -> None:
    """``[blockfs] compression = fpzip`` in luigi.cfg; ``--blockfs-compression pcodec`` and BitRound as flags."""
    data = float_source(tmp_path / "src.npy")
    config = write_config(tmp_path / "luigi.cfg", {"blockfs": {"block_size": 16, "compression": "fpzip"}})
    runs = {
        "fpzip.blockfs": [],
        "rounded.blockfs": ["--blockfs-compression", "pcodec", "--blockfs-compression-level", "4",
                            "--blockfs-bitround-keepbits", "10"],
    }
    for dest, flags in runs.items():
        done = subprocess.run(
            luigi_command("BuildDirectory", "--source", "src.npy", "--dest", dest, "--local-scheduler", *flags),
            cwd=tmp_path, env=luigi_env(config), capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr
    exact = Directory.open(tmp_path / "fpzip.blockfs")
    assert exact.spec.codec.to_dict() == {"id": "fpzip"}
    assert exact[:, :, :].tobytes() == data.tobytes()
    rounded = Directory.open(tmp_path / "rounded.blockfs")
    assert rounded.spec.codec.to_dict() == {
        "id": "pcodec", "level": 4, "bitround_keepbits": 10, "loss": {"max_rel_error": 2.0**-11}}
    assert np.all(np.abs(rounded[:, :, :] - data) <= 2.0**-11 * np.abs(data))


def test_a_float_codec_on_an_integer_source_fails_before_writing(tmp_path: Path) -> None:
    np.save(tmp_path / "src.npy", np.zeros((8, 8, 8), np.uint16))
    config = write_config(tmp_path / "luigi.cfg", {"blockfs": {"block_size": 8}})
    done = subprocess.run(
        luigi_command("BuildDirectory", "--source", "src.npy", "--dest", "v.blockfs", "--local-scheduler",
                      "--blockfs-compression", "fpzip"),
        cwd=tmp_path, env=luigi_env(config), capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode != 0
    assert "The codec 'fpzip' stores float32 and float64 volumes only. Got dtype uint16" in done.stderr
    assert not (tmp_path / "v.blockfs").exists()


def test_bit_shuffle_from_the_command_line_and_true_as_before(tmp_path: Path) -> None:
    """``--blockfs-shuffle bit`` (labels) writes a bit-shuffled volume; ``true`` / ``false`` keep their meaning."""
    labels = np.zeros((24, 40, 36), np.uint32)
    labels[4:20, 8:30, 6:30] = 7
    np.save(tmp_path / "labels.npy", labels)
    config = write_config(tmp_path / "luigi.cfg", {"blockfs": {"block_size": 16}})
    for dest, shuffle, want in (("bit.blockfs", "bit", 2), ("true.blockfs", "true", 1), ("none.blockfs", "false", 0)):
        done = subprocess.run(
            luigi_command("BuildDirectory", "--source", "labels.npy", "--dest", dest, "--local-scheduler",
                          "--blockfs-shuffle", shuffle),
            cwd=tmp_path, env=luigi_env(config), capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr
        volume = Directory.open(tmp_path / dest)
        assert volume.spec.codec.shuffle == want
        assert np.array_equal(volume[:, :, :], labels)
    bad = subprocess.run(
        luigi_command("BuildDirectory", "--source", "labels.npy", "--dest", "x.blockfs", "--local-scheduler",
                      "--blockfs-shuffle", "sideways"),
        cwd=tmp_path, env=luigi_env(config), capture_output=True, text=True, timeout=300, check=False,
    )
    assert bad.returncode != 0 and "expected shuffle none, byte or bit" in bad.stdout + bad.stderr
    assert not (tmp_path / "x.blockfs").exists()
