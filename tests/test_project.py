"""Project hygiene: notebooks, table of contents, dependency lists, README and CI agree."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cxrlib.runner import CHAPTERS, toc_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_chapter_has_a_notebook_and_a_toc_entry():
    assert {p.stem for p in NOTEBOOKS} == set(CHAPTERS)
    assert [f for f in toc_files(ROOT) if f.startswith("book/chapters/")] == [f"book/chapters/{c}" for c in CHAPTERS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs_and_has_parameters(path):
    cells = json.loads(path.read_text())["cells"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in cells)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "PROFILE" in "".join(tagged[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_hold_no_model_or_metric_code(path):
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    forbidden = re.findall(r"layers\.\w+\(|\.compile\(|\.fit\(|f1_score|roc_auc_score|^def |^class ", code, re.M)
    assert not forbidden


def _names(requirements):
    return {re.split(r"[<>=!~ \[]", r.strip())[0].lower() for r in requirements if not r.strip().startswith("-")}


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    assert sorted(r for r in pip if not r.startswith("-")) == sorted(declared)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
