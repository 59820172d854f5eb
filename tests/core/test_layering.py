"""The layers stay layers: the plain packages never import luigi, nor the layers above them.

``core``, ``ingest``, ``export``, ``pyramid``, ``serve`` and ``zarr`` are plain
Python: importing each in a fresh interpreter leaves luigi out, and no module
of theirs imports ``blockfs_tasks.tasks`` or ``blockfs_tasks.cli`` (checked in
the source, so a lazy import inside a function is caught too).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import blockfs_tasks
import blockfs_tasks.core

PACKAGE = Path(blockfs_tasks.__file__).parent
CORE = Path(blockfs_tasks.core.__file__).parent
PLAIN = ("core", "ingest", "export", "pyramid", "serve", "zarr")
ABOVE = ("blockfs_tasks.tasks", "blockfs_tasks.cli")


def _fresh(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out += [(node.lineno, module)]
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]  # from blockfs_tasks import tasks
    return out


def test_importing_the_core_does_not_import_luigi() -> None:
    out = _fresh(
        "import sys\n"
        "import blockfs_tasks, blockfs_tasks.core\n"
        "from blockfs_tasks.core import Directory\n"
        "print(sorted(m for m in sys.modules if m == 'luigi' or m.startswith('luigi.')))\n"
    )
    assert out == "[]"


@pytest.mark.parametrize("package", PLAIN)
def test_importing_a_plain_package_does_not_import_luigi(package: str) -> None:
    out = _fresh(
        "import sys\n"
        f"import blockfs_tasks.{package}\n"
        "print(sorted(m for m in sys.modules if m == 'luigi' or m.startswith('luigi.')))\n"
    )
    assert out == "[]"


def test_the_public_errors_module_does_not_import_luigi() -> None:
    assert _fresh("import sys, blockfs_tasks.errors; print('luigi' in sys.modules)") == "False"


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


@pytest.mark.parametrize("package", PLAIN)
def test_no_plain_module_imports_luigi_or_a_layer_above(package: str) -> None:
    """A static check too, so a lazy ``import luigi`` inside a function is caught."""
    paths = sorted((PACKAGE / package).rglob("*.py"))
    assert paths, f"no modules in blockfs_tasks.{package}"
    for path in paths:
        for line, name in _imports(path):
            where = f"{path}:{line} imports {name}"
            assert not (name == "luigi" or name.startswith("luigi.")), where
            assert not any(name == a or name.startswith(a + ".") for a in ABOVE), where


def test_the_core_imports_no_other_layer() -> None:
    """The core is the bottom layer: it imports only itself from the package."""
    for path in sorted(CORE.rglob("*.py")):
        for line, name in _imports(path):
            if name.startswith("blockfs_tasks."):
                assert name.startswith("blockfs_tasks.core"), f"{path}:{line} imports {name}"
