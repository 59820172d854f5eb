"""The modules of export/ and pyramid/ import each other without a circle (read from their source with ast).

A circle hidden behind a function-level or ``TYPE_CHECKING`` import still
counts: every ``import`` statement anywhere in a module is an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blockfs_tasks

PACKAGE_ROOT = Path(blockfs_tasks.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Edges between the modules of ``package`` (a subpackage of blockfs_tasks), its ``__init__`` excluded.

    The package's ``__init__`` only re-exports its modules, so an edge into it
    is taken as an edge into nothing inside the package.
    """
    folder = PACKAGE_ROOT / package
    modules = {module_name(p): p for p in folder.rglob("*.py") if p.name != "__init__.py"}
    return {name: imported_modules(path) & modules.keys() for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_find_cycle_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package", ["export", "pyramid"])
def test_no_import_circle(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 2, graph  # the walk found the modules
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
