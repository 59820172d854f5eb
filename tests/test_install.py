"""The installed package imports from any folder, including the one that holds the clone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import blockfs_tasks

CHECKOUT = Path(blockfs_tasks.__file__).resolve().parent.parent


def test_import_from_the_folder_that_holds_the_clone(tmp_path: Path) -> None:
    """``git clone ... blockfs_tasks`` makes ``./blockfs_tasks/`` (no ``__init__.py``) in the user's folder.

    Python must still import the real package, not that folder as an empty namespace package.
    """
    (tmp_path / "blockfs_tasks" / "blockfs_tasks").mkdir(parents=True)  # what a clone looks like from outside
    (tmp_path / "blockfs_tasks" / "README.md").write_text("a clone\n")
    code = "import blockfs_tasks; from blockfs_tasks import Directory; print(blockfs_tasks.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == Path(blockfs_tasks.__file__).resolve()
