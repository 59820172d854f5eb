"""docs/format.md carries the same spec as the format module's docstring."""

from pathlib import Path

import blockfs_tasks.core.format as fmt


def test_docs_match_module_docstring():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "format.md").read_text()
    assert fmt.__doc__.strip() in doc
