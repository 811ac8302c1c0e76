"""The library imports in one direction, by import-linter's contracts in pyproject.toml ([tool.importlinter]):
core < science < present < machinery, nothing imports the command line, no import cycle; import-linter reads
every import of a module, function-level ones included."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCIENCE_MAX_LINES = 2600


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package cxrlib under root, with the contracts of root's pyproject.toml, writing no cache."""
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)


def test_the_import_contracts_hold():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def toy_package(root: Path, files: dict) -> None:
    """A cxrlib with the four layers, a command line and these files, under the project's contracts."""
    (root / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    files = {"__init__.py": "", "core/__init__.py": "", "science/__init__.py": "", "present/__init__.py": "x = 1\n",
             "machinery/__init__.py": "", "machinery/cli.py": "", **files}
    for name, text in files.items():
        (root / "cxrlib" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "cxrlib" / name).write_text(text)


LAYERS, CLI, CYCLES = "Layers import only downward", "Nothing imports the command line", "No import cycle"


@pytest.mark.parametrize("files, contract, line", [
    ({"science/metrics.py": "def late():\n    from cxrlib.present import x\n"}, LAYERS,
     "cxrlib.science.metrics -> cxrlib.present (l.2)"),
    ({"machinery/runner.py": "from cxrlib.machinery import cli\n"}, CLI,
     "cxrlib.machinery.runner -> cxrlib.machinery.cli"),
    ({"core/a.py": "from cxrlib.core import b\n", "core/b.py": "def late():\n    from cxrlib.core import a\n"},
     CYCLES, "No cycles are allowed in cxrlib.core"),
    ({"helpers.py": ""}, LAYERS, "cxrlib.helpers"),
])
def test_the_contracts_see_upward_imports_cli_imports_cycles_and_stray_modules(tmp_path, files, contract, line):
    toy_package(tmp_path, {})
    assert lint_imports(tmp_path).returncode == 0
    toy_package(tmp_path, files)
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "2 kept, 1 broken" in done.stdout, done.stdout + done.stderr
    assert re.search(rf"^{contract}.* BROKEN$", done.stdout, re.M) and line in done.stdout


def test_the_science_reads_on_its_own_in_a_small_core():
    """A size limit, not an import rule: import-linter has no contract for it."""
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "cxrlib" / "science").rglob("*.py"))
    assert lines <= SCIENCE_MAX_LINES, f"the science layer has {lines} lines (at most {SCIENCE_MAX_LINES})"


def test_the_cli_and_the_chapters_start_without_tensorflow():
    """`cxr` and the chapters that train nothing never pay TensorFlow's import (the runner's processes log nothing of it)."""
    code = ("import sys, cxrlib.machinery.cli, cxrlib.machinery.chapter, cxrlib.machinery.analysis; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
