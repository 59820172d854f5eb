"""``blockfs_tasks.errors`` names every error class of the package, wherever a layer defines it."""

from __future__ import annotations

import ast
from pathlib import Path

import blockfs_tasks
import blockfs_tasks.errors
from blockfs_tasks.core.errors import BlockfsError

PACKAGE = Path(blockfs_tasks.__file__).parent


def _error_classes_in_source() -> dict[str, str]:
    """Every class of the package that derives (through other such classes) from BlockfsError: {name: file}."""
    classes: dict[str, tuple[list[str], str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                named = [b for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))]
                bases = [b.id if isinstance(b, ast.Name) else b.attr for b in named]
                classes[node.name] = (bases, str(path.relative_to(PACKAGE)))
    errors = {"BlockfsError": classes["BlockfsError"][1]}
    grew = True
    while grew:
        grew = False
        for name, (bases, where) in classes.items():
            if name not in errors and any(b in errors for b in bases):
                errors[name] = where
                grew = True
    return errors


def test_every_error_class_of_the_package_is_public() -> None:
    errors = _error_classes_in_source()
    assert {"FormatError", "SourceError", "RemoteRankError"} <= set(errors)  # the scan sees every layer
    for name, where in sorted(errors.items()):
        cls = getattr(blockfs_tasks.errors, name, None)
        assert cls is not None, f"{name} (in {where}) is not re-exported by blockfs_tasks.errors"
        assert issubclass(cls, BlockfsError), name
        assert name in blockfs_tasks.errors.__all__, name


def test_the_public_module_names_only_error_classes() -> None:
    for name in blockfs_tasks.errors.__all__:
        assert issubclass(getattr(blockfs_tasks.errors, name), BlockfsError), name


def test_every_loaded_subclass_is_public() -> None:
    """The import-time view: every subclass of BlockfsError loaded now is reachable by its name."""
    seen, todo = set(), [BlockfsError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("blockfs_tasks.") and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    for cls in seen:
        assert getattr(blockfs_tasks.errors, cls.__name__, None) is cls, f"{cls.__module__}.{cls.__name__}"
