"""The library imports in one direction: no cycle among cxrlib's modules, function-level imports included."""
from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxrlib"


def module_name(path: Path) -> str:
    """cxrlib/machinery/inputs/images.py -> cxrlib.machinery.inputs.images; a package's __init__ is the package."""
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


# bottom to top: a module may import its own layer and the layers below it, never one above
LAYERS = ("core", "science", "present", "machinery")
CLI = "cxrlib.machinery.cli"
SCIENCE_MAX_LINES = 2600


def layer(module: str) -> int:
    """The index in LAYERS of a cxrlib module (the package's own __init__ sits at the bottom)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0


def upward_imports(graph: dict) -> list:
    """'importer -> imported' for every import of a higher layer."""
    return sorted(f"{m} -> {i}" for m, found in graph.items() for i in found if layer(i) > layer(m))


def test_every_module_sits_in_a_layer():
    stray = [m for m in import_graph() if m != "cxrlib" and m.split(".")[1] not in LAYERS]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_layers_import_only_downward():
    upward = upward_imports(import_graph())
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_nothing_reaches_up_to_the_cli():
    assert not [m for m, found in import_graph().items() if CLI in found]


def test_the_science_reads_on_its_own_in_a_small_core():
    lines = sum(len(p.read_text().splitlines()) for p in (PACKAGE / "science").rglob("*.py"))
    assert lines <= SCIENCE_MAX_LINES, f"the science layer has {lines} lines (at most {SCIENCE_MAX_LINES})"


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    package = tmp_path / "cxrlib"
    for sub in ("", "science", "present"):
        (package / sub).mkdir(exist_ok=True)
        (package / sub / "__init__.py").write_text("")
    (package / "present" / "plots.py").write_text("x = 1\n")
    (package / "science" / "metrics.py").write_text("def late():\n    from cxrlib.present.plots import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert upward_imports(import_graph()) == ["cxrlib.science.metrics -> cxrlib.present.plots"]


def test_the_cli_and_the_chapters_start_without_tensorflow():
    """`cxr` and the chapters that train nothing never pay TensorFlow's import (the runner's processes log nothing of it)."""
    import subprocess

    code = ("import sys, cxrlib.machinery.cli, cxrlib.machinery.chapter, cxrlib.machinery.analysis; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
