"""The package's Luigi defaults apply from any folder, under the user's own config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import luigi

from blockfs_tasks.tasks.defaults import DEFAULTS_PATH, install_defaults, read_defaults

from .conftest import REPO, luigi_command, write_config

FAILING = ("BuildDirectory", "--source", "/nonexistent/img_*.tiff", "--dest", "v.blockfs", "--local-scheduler")


def run_in(cwd: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LUIGI_CONFIG_PATH", "PYTHONWARNINGS")}
    if config is not None:
        env["LUIGI_CONFIG_PATH"] = str(config)
    return subprocess.run(
        luigi_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_checkout_luigi_cfg_is_the_shipped_defaults():
    assert (REPO / "luigi.cfg").read_bytes() == DEFAULTS_PATH.read_bytes(), (
        "copy blockfs_tasks/tasks/defaults.cfg to luigi.cfg"
    )


def test_failed_run_from_a_data_folder_exits_non_zero_and_logs_at_info(tmp_path: Path):
    done = run_in(tmp_path, *FAILING)
    assert done.returncode == int(read_defaults()["retcode"]["scheduling_error"]), done.stderr
    assert "/nonexistent/img_*.tiff" in done.stderr
    assert "DEBUG" not in done.stderr


def test_users_config_overrides_the_defaults(tmp_path: Path):
    write_config(tmp_path / "luigi.cfg", {"retcode": {"scheduling_error": 7}})
    assert run_in(tmp_path, *FAILING).returncode == 7  # ./luigi.cfg
    other = write_config(tmp_path / "other.cfg", {"retcode": {"scheduling_error": 9}})
    assert run_in(tmp_path, *FAILING, config=other).returncode == 9  # LUIGI_CONFIG_PATH, above ./luigi.cfg
    assert run_in(tmp_path, *FAILING, "--retcode-scheduling-error", "11").returncode == 11  # the command line


def test_install_defaults_keeps_values_already_set():
    config = luigi.configuration.get_config()
    saved = config.get("ingest", "target_tasks")
    config.set("ingest", "target_tasks", "77")
    try:
        paths = list(config._config_paths)
        install_defaults()  # already installed on import: a second call changes nothing
        assert config._config_paths == paths and paths[0] == str(DEFAULTS_PATH)
        assert config.get("ingest", "target_tasks") == "77"
        assert config.get("retcode", "task_failed") == read_defaults()["retcode"]["task_failed"]
    finally:
        config.set("ingest", "target_tasks", saved)
