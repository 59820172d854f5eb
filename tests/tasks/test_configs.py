"""Every section of luigi.cfg and configs/*.cfg names real tasks/configs and real parameters."""

from __future__ import annotations

from pathlib import Path

import luigi
import pytest
from luigi.configuration.cfg_parser import LuigiConfigParser

import blockfs_tasks.tasks  # noqa: F401  (registers the tasks)

REPO = Path(__file__).resolve().parents[2]
LUIGI_SECTIONS = {"core", "retcode", "resources", "scheduler", "worker"}


@pytest.mark.parametrize("path", [REPO / "luigi.cfg", *sorted((REPO / "configs").rglob("*.cfg"))], ids=lambda p: p.name)
def test_config_sections_and_keys_exist(path: Path):
    parser = LuigiConfigParser()
    parser.read(path)
    registry = luigi.task_register.Register
    for section in parser.sections():
        if section in LUIGI_SECTIONS:
            continue
        cls = registry.get_task_cls(section)
        names = {name for name, _ in cls.get_params()}
        for key in parser.options(section):
            if key in parser.defaults():
                continue
            assert key in names, f"{path.name}: [{section}] {key} is not a parameter of {section}"
            parser.get(section, key)  # interpolation works (%% in patterns)
