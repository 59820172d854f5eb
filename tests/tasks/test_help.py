"""`luigi --module blockfs_tasks.tasks TASK --help` works for every task, and `--help-all` once."""

from __future__ import annotations

import subprocess

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser

from blockfs_tasks import tasks

from .conftest import luigi_command

TASKS = sorted(
    name for name in tasks.__all__
    if isinstance(getattr(tasks, name), type) and issubclass(getattr(tasks, name), luigi.Task)
)


@pytest.mark.parametrize("name", TASKS)
def test_help_of_every_task(name: str):
    # The parser `--help` prints (argparse %-formats every help string, so a stray % crashes it).
    text = CmdlineParser._build_parser(root_task=name).format_help()
    for param, _ in getattr(tasks, name).get_params():
        assert f"--{param.replace('_', '-')}" in text


def test_help_and_help_all_commands(tmp_path):
    for flag in ("--help", "--help-all"):
        done = subprocess.run(
            luigi_command("ExportTiff", flag), capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "/out/img_%04d.tiff" in done.stdout
    assert "--blockfs-block-size" in done.stdout and "--ingest-target-tasks" in done.stdout
