"""The library imports in one direction: no cycle among cxrlib's modules, function-level imports included."""
from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxrlib"


def module_name(path: Path) -> str:
    """cxrlib/data/images.py -> cxrlib.data.images; a package's __init__ is the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set) -> set:
    """The cxrlib modules a file imports anywhere in it (a name imported from a package counts as its module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrlib"):
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict:
    """module -> the cxrlib modules it imports (itself and its own package left out)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in imported(path, set(files)) if m != name and not name.startswith(m + ".")}
    return graph


def test_no_import_cycles():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle in cxrlib: {' -> '.join(err.args[1])}")


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "cxrlib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cxrlib import b\n")
    (package / "b.py").write_text("def late():\n    from cxrlib.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(import_graph()).prepare()
