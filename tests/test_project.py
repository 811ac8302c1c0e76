"""Project hygiene: notebooks, table of contents, dependency lists, README and CI agree."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cxrlib.core.manifest import CHAPTERS
from cxrlib.machinery import repro
from cxrlib.machinery.site import toc_files

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


# What a notebook must leave to cxrlib: writing results, fitting anything, drawing by hand, choosing the models
NOT_IN_NOTEBOOKS = {
    "saving": r"\.save\w*\(|\.to_csv\(|\.to_json\(|np\.save|write_\w+\(|\.run\.\w+|record_\w+\(|open\([^)]*['\"]w",
    "fitting": r"\bfit\w*\(|genetic_\w+\(|evolution_weights\(|\.search\(",
    "plotting": r"\bplt\.|\bax\.\w+\(|\baxes\[|subplots\(|\.plot(?:\.\w+)?\(|\.imshow\(|\.legend\(",
    "model choice": r"model_choice\(|best_models\(|idxmax\(",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_leave_saving_fitting_plotting_and_choosing_to_cxrlib(path):
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    found = {what: re.findall(pattern, code) for what, pattern in NOT_IN_NOTEBOOKS.items()}
    assert not any(found.values()), f"{path.name}: {found}"


def test_the_notebook_check_sees_each_kind_of_logic():
    cells = {"saving": "ch.run.save_metrics('ga', row)", "fitting": "w = ensemble.fit_on_validation(z, y, p)",
             "plotting": "ax.set_ylabel('share')", "model choice": "best = scores.idxmax()"}
    for what, line in cells.items():
        assert re.findall(NOT_IN_NOTEBOOKS[what], line), what


LOCKS = {v: ROOT / "requirements" / f"lock-py{v.replace('.', '')}.txt" for v in ("3.11", "3.12", "3.13")}


def _declared() -> dict:
    """pyproject.toml's dependencies and test extra: normalized name -> requirement."""
    from packaging.requirements import Requirement

    return {repro.requirement_name(r): Requirement(r) for r in repro.declared_requirements(ROOT / "pyproject.toml")}


def _conda_pip() -> list:
    """The pip section of environment.yml, without options such as -e ."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return [r for r in pip if not r.startswith("-")]


@pytest.mark.parametrize("python", LOCKS)
def test_lock_pins_every_declared_package_within_its_range_with_hashes(python):
    from packaging.markers import default_environment

    lock = LOCKS[python]
    pins = repro.locked_versions(lock)
    marker_env = {**default_environment(), "python_version": python, "sys_platform": "linux",
                  "platform_machine": "x86_64", "extra": "test"}
    for name, requirement in _declared().items():
        if requirement.marker and not requirement.marker.evaluate(marker_env):
            continue
        assert name in pins, f"{name} of pyproject.toml is not in {lock.name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock.name} pins {name}=={pins[name]}, outside pyproject's {requirement}: run `make lock`")
    text = lock.read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if re.match(r"[A-Za-z0-9][^ ]*==", b)]
    assert len(blocks) == len(pins) and all("--hash=sha256:" in b for b in blocks), "every pin needs its hashes"
    assert "-e " not in text and "file:" not in text, "the lock names registry packages only"


def test_environment_yml_pins_pyprojects_packages_at_the_locked_versions():
    declared, pins = _declared(), repro.locked_versions(LOCKS["3.11"])
    conda = {repro.requirement_name(r): r for r in _conda_pip()}
    assert sorted(conda) == sorted(declared), "environment.yml and pyproject.toml name other packages: run `make lock`"
    for name, requirement in conda.items():
        assert requirement == f"{name}=={pins[name]}", f"environment.yml has {requirement}; lock-py311 pins {pins[name]}"
    assert (ROOT / "environment.yml").read_text() == repro.environment_yml(LOCKS["3.11"], ROOT / "pyproject.toml")


def test_makefile_installs_from_the_lock_without_resolving():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^lock:", makefile, re.M) and "--generate-hashes" in makefile
    assert all(f"lock-py{v.replace('.', '')}" in str(p) for v, p in LOCKS.items())
    assert "LOCK_PYTHONS := " + " ".join(LOCKS) in makefile


def make_env(tmp_path, pythons: dict, *options) -> subprocess.CompletedProcess:
    """`make env` with only these fake interpreters (name -> the version each says it is) on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, version in pythons.items():
        (bin_dir / name).write_text(f"#!/bin/sh\necho {version}\n")
        (bin_dir / name).chmod(0o755)
    command = [shutil.which("make"), *options, "env", f"VENV={tmp_path / 'venv'}"]
    return subprocess.run(command, cwd=ROOT, env={"PATH": str(bin_dir)}, capture_output=True, text=True, check=False)


def test_make_takes_the_newest_installed_locked_python_when_python3_has_no_lock_and_says_so(tmp_path):
    done = make_env(tmp_path, {"python3": "3.99", "python3.11": "3.11", "python3.12": "3.12"}, "-n", "-B")
    assert done.stdout.startswith("make: python3 is Python 3.99, which has no lock file; using python3.12, which")
    assert f"python3.12 -m venv {tmp_path / 'venv'}" in done.stdout and "lock-py312.txt" in done.stdout


def test_make_stops_in_one_line_without_a_locked_python(tmp_path):
    done = make_env(tmp_path, {"python3": "3.99", "python3.13": "3.10"})  # a python3.13 that is not 3.13 is no help
    assert done.returncode != 0 and not (tmp_path / "venv").exists()
    assert done.stderr.splitlines()[0] == (
        "make: no lock file requirements/lock-py399.txt for python3 (Python 399); locks exist for Python "
        "3.11 3.12 3.13: use one of those (make PYTHON=python3.11 ...), or add it to LOCK_PYTHONS and run make lock")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
