"""Export commands' output (issue 8 item 12): one final bar, the summary after the bar, Ctrl-C in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from blockfs_tasks import cli
from blockfs_tasks.cli import exports, hdf5_main, jp2k_main, tif_main

from .test_hdf5 import REPO, _mpiexec, make_volume, read_back, volume_data

RESUME = "interrupted; rerun the same command to resume"


@pytest.fixture
def volume(tmp_path: Path) -> tuple[str, np.ndarray]:
    data = volume_data((16, 64, 64), "uint16")
    return str(make_volume(tmp_path / "vol.blockfs", data, (32, 32, 8))), data


@pytest.fixture
def every_update_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars that print every update (tqdm's default skips updates within 0.1 s, which hid the double print)."""
    monkeypatch.setattr(
        exports, "_progress",
        lambda total, silent, unit: tqdm(total=total, unit=unit, disable=silent, file=sys.stderr, mininterval=0,
                                         miniters=1),
    )


def final_bars(err: str, n: int) -> int:
    return sum(f"{n}/{n} [" in part for part in err.replace("\r", "\n").split("\n"))


def test_each_export_prints_its_final_bar_once(
    tmp_path: Path, volume: tuple[str, np.ndarray], every_update_shown: None, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = volume
    assert tif_main(["--input", src, "--output-pattern", str(tmp_path / "t" / "p_%02d.tif")]) == 0
    assert final_bars(capsys.readouterr().err, 16) == 1
    assert jp2k_main(["--input", src, "--output-pattern", str(tmp_path / "j" / "p_%02d.jp2")]) == 0
    assert final_bars(capsys.readouterr().err, 16) == 1
    assert hdf5_main([src, str(tmp_path / "o.h5"), "v"]) == 0
    assert final_bars(capsys.readouterr().err, 8) == 1


def test_hdf5_summary_comes_after_the_closed_bar_on_its_own_line(
    tmp_path: Path, volume: tuple[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = volume
    assert hdf5_main([src, str(tmp_path / "o.h5"), "v"]) == 0
    out, err = capsys.readouterr()
    lines = err.replace("\r", "\n").strip().split("\n")
    assert lines[-1].startswith(f"{tmp_path / 'o.h5'}:v: planes [0, 16), 8 chunks"), err
    assert "8/8" in lines[-2] and out == ""


def test_hdf5_progress_lines_for_a_parent_process(
    tmp_path: Path, volume: tuple[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = volume
    assert hdf5_main([src, str(tmp_path / "o.h5"), "v", "--silent", "--progress-lines"]) == 0
    lines = capsys.readouterr().out.split("\n")
    pairs = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("progress ")]
    assert pairs[-1] == (8, 8) and [d for d, _ in pairs] == sorted(d for d, _ in pairs) and len(pairs) == 8


INTERRUPT = textwrap.dedent(
    """
    import os, signal, sys
    import blockfs_tasks.export.hdf5 as hdf5, blockfs_tasks.export.jp2k as jp2k, blockfs_tasks.export.tiff as tiff
    from blockfs_tasks import cli

    def interrupted(export):  # Ctrl-C at the export's second progress report
        def run(*args, progress=None, **kwargs):
            calls = []
            def report(done, total):
                calls.append(done)
                progress(done, total)
                if len(calls) == 2:
                    os.kill(os.getpid(), signal.SIGINT)
            return export(*args, progress=report, **kwargs)
        return run

    tiff.export_tiff = interrupted(tiff.export_tiff)
    jp2k.export_jp2k = interrupted(jp2k.export_jp2k)
    hdf5.export_hdf5 = interrupted(hdf5.export_hdf5)
    sys.exit(getattr(cli, sys.argv[1])(sys.argv[2:]))
    """
)


@pytest.mark.parametrize("command", ["tif_main", "jp2k_main", "hdf5_main"])
def test_ctrl_c_ends_in_one_line_and_the_same_command_resumes(
    tmp_path: Path, volume: tuple[str, np.ndarray], command: str
) -> None:
    src, data = volume
    args = {
        "tif_main": ["--input", src, "--output-pattern", str(tmp_path / "t" / "p_%02d.tif"), "--n-workers", "1"],
        "jp2k_main": ["--input", src, "--output-pattern", str(tmp_path / "j" / "p_%02d.jp2"), "--n-workers", "1"],
        "hdf5_main": [src, str(tmp_path / "o.h5"), "v", "--n-threads", "1"],
    }[command]
    done = subprocess.run([sys.executable, "-c", INTERRUPT, command, *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.replace("\r", "\n").split("\n") if "interrupted" in line] == [
        f"{ {'tif_main': 'blockfs2tif', 'jp2k_main': 'blockfs2jp2k', 'hdf5_main': 'blockfs2hdf'}[command]}: {RESUME}"
    ]
    assert getattr(cli, command)(args) == 0  # the same command again
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if ".tmp-" in f or "rollback" in f]
    assert leftovers == []
    if command == "hdf5_main":
        np.testing.assert_array_equal(read_back(tmp_path / "o.h5", "v"), data)


def test_ctrl_c_under_mpiexec_is_one_line_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """Ctrl-C reaches every rank: rank 0 rolls the file back and alone says so; no MPI stack dump."""
    data = volume_data((64, 256, 256), "uint16")
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 16))
    dest = tmp_path / "o.h5"
    code = "import sys; from blockfs_tasks.cli import hdf5_main; sys.exit(hdf5_main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [_mpiexec(), "-n", "2", sys.executable, "-c", code, str(src), str(dest), "v", "--compression-opts", "9",
         "--n-threads", "1", "--progress-lines", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]  # stdout/stderr=PIPE
        assert first.startswith("progress "), first
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does to mpiexec
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.split("\n") if line.strip()]
    assert lines == [f"blockfs2hdf: {RESUME}"], err
    assert not dest.exists() and not Path(f"{dest}.blockfs-rollback").exists()
