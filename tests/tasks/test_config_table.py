"""README's table of config options matches the Config classes and the shipped defaults.

The table sits between ``<!-- config-table -->`` and ``<!-- /config-table -->``
in README.md; the test skips until those markers are there. Regenerate it with
``python -m tests.tasks.test_config_table``.
"""

from __future__ import annotations

import luigi
import pytest

from blockfs_tasks.tasks.config import blockfs, export, ingest
from blockfs_tasks.tasks.defaults import read_defaults
from blockfs_tasks.tasks.pyramid import pyramid

from .conftest import REPO

CONFIGS: list[type[luigi.Config]] = [blockfs, ingest, export, pyramid]
START, END = "<!-- config-table -->", "<!-- /config-table -->"


def describe(param: luigi.Parameter) -> str:
    """The description, with a ChoiceParameter's choices in a stable order (luigi lists a set)."""
    text = param.description or ""
    if isinstance(param, luigi.ChoiceParameter):
        text = text.split(" Choices: {")[0] + " Choices: " + ", ".join(sorted(map(str, param._choices))) + "."
    return text


def config_table() -> str:
    """The Markdown table: command-line flag, luigi.cfg key, default, meaning."""
    defaults = read_defaults()
    rows = ["| option | luigi.cfg | default | meaning |", "|---|---|---|---|"]
    for cls in CONFIGS:
        section = cls.get_task_family()
        for name, param in cls.get_params():
            value = defaults.get(section, name, fallback=None)
            value = "(empty)" if value == "" else value
            flag = f"--{section}-{name}".replace("_", "-")
            rows.append(f"| `{flag}` | `[{section}] {name}` | `{value}` | {describe(param)} |")
    return "\n".join(rows)


def test_readme_config_table_matches_the_config_classes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        pytest.skip("README.md has no config table markers yet")
    table = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == config_table(), "update README's table: python -m tests.tasks.test_config_table"


def test_every_option_has_a_shipped_default():
    defaults = read_defaults()
    for cls in CONFIGS:
        for name, _ in cls.get_params():
            assert defaults.has_option(cls.get_task_family(), name), f"[{cls.get_task_family()}] {name}"



def test_package_exports_the_config_classes():
    from blockfs_tasks import tasks

    assert (tasks.blockfs, tasks.ingest, tasks.export, tasks.pyramid) == tuple(CONFIGS)  # not the submodules


if __name__ == "__main__":
    print(config_table())
