"""The core never imports luigi: importing and using it in a fresh interpreter leaves luigi out."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import blockfs_tasks.core

CORE = Path(blockfs_tasks.core.__file__).parent


def _fresh(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_core_does_not_import_luigi() -> None:
    out = _fresh(
        "import sys\n"
        "import blockfs_tasks, blockfs_tasks.core\n"
        "from blockfs_tasks.core import Directory\n"
        "print(sorted(m for m in sys.modules if m == 'luigi' or m.startswith('luigi.')))\n"
    )
    assert out == "[]"


def test_using_every_core_module_does_not_import_luigi(tmp_path: Path) -> None:
    """Writing, reading, info, verify and relocation: still no luigi."""
    out = _fresh(
        "import sys, numpy as np\n"
        "import blockfs_tasks.core.relocate, blockfs_tasks.core.report, blockfs_tasks.core.atomic\n"
        "from blockfs_tasks.core import Directory\n"
        f"p = {str(tmp_path / 'v.blockfs')!r}\n"
        "d = Directory(8, 8, 8, 'uint8', p, 4, 4, 4); d.create()\n"
        "d.write_block(np.ones((4, 4, 4), 'uint8'), 0, 0, 0); d.close()\n"
        "assert Directory.open(p)[:].sum() == 64\n"
        "blockfs_tasks.core.report.volume_info(p); blockfs_tasks.core.report.verify_volume(p)\n"
        "print('luigi' in sys.modules)\n"
    )
    assert out == "False"


def test_no_core_module_mentions_luigi_in_its_imports() -> None:
    """A static check too, so a lazy ``import luigi`` inside a function is caught."""
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "luigi" or n.startswith("luigi.") for n in names), f"{path}:{node.lineno}"
