"""The data that ships with the project (data/): the default source of a fresh clone, with nothing beside it.

Synthetic images only when asked for (DATA=synthetic); a missing sample is an error naming where it belongs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES, REPO_ROOT
from cxrlib.machinery import cli
from cxrlib.machinery import runner
from cxrlib.machinery.inputs import sources
from cxrlib.present.dataset import where
from tests.conftest import SAMPLE

DATA = REPO_ROOT / "data"
# what a clone needs to run a chapter: the library, the notebooks, the data and the book's skeleton
CLONE = ("cxrlib", "notebooks", "data", "book/intro.template.md", "_static", "_config.yml", "_toc.yml", "pyproject.toml",
         "requirements")
DATA_ENV = ("CXR_DATA_DIR", "CXR_SAMPLE_DIR", "CXR_NIH_METADATA", "CXR_NOTEBOOKS_DIR", "CXR_TEST_BOOK")


def sample_count(folder: Path) -> int:
    """Images of the four classes the sample's own labels.csv lists."""
    return int(pd.read_csv(folder / "labels.csv")["Finding Labels"].isin(CLASSES).sum())


def test_the_defaults_are_the_data_shipped_in_the_repository():
    assert sources.SAMPLE_DIR == DATA / "cxr14-sample" == SAMPLE
    assert sources.NIH_METADATA_DIR == DATA / "nih-metadata"
    for readme in ("cxr14-sample/README.md", "nih-metadata/README.md"):
        assert "Wang" in (DATA / readme).read_text()  # the citation travels with the data
    assert (DATA / "nih-metadata" / "BBox_List_2017.csv").is_file()


def test_the_sample_lists_exactly_its_images_and_nothing_big_ships():
    labels = pd.read_csv(SAMPLE / "labels.csv")
    assert sorted(labels["Image Index"]) == sorted(p.name for p in (SAMPLE / "images").iterdir())
    assert labels["Image Index"].is_unique and sample_count(SAMPLE) == len(labels)
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert {p.name for p in files if p.stat().st_size > 2 * 2**20} == set()  # the repository flags files > 2 MB
    assert sum(p.stat().st_size for p in files) < 12 * 2**20  # the whole repository stays under 20 MB
    assert {"".join(p.suffixes) for p in files} <= {".png", ".csv", ".csv.gz", ".md"}  # no weights, no arrays


def test_environment_overrides_the_shipped_data(nih_folder, isolated, monkeypatch):
    for name in DATA_ENV:
        monkeypatch.delenv(name, raising=False)
    assert sources.nih_label_file() == DATA / "nih-metadata" / "Data_Entry_2017_v2020.csv.gz"
    monkeypatch.setenv("CXR_NIH_METADATA", str(nih_folder))
    assert sources.nih_metadata_dir() == nih_folder and sources.nih_label_file() == nih_folder / "Data_Entry_2017.csv"
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(nih_folder))
    source = sources.resolve_source()
    assert source.kind == "sample" and where(source.root) == f"at {nih_folder.resolve()}"
    monkeypatch.setenv("CXR_DATA_DIR", str(nih_folder))
    assert sources.resolve_source().kind == "nih"
    assert where(SAMPLE) == "shipped with the project in data/cxr14-sample"


def test_a_missing_sample_stops_the_runner_in_one_line_saying_where_it_belongs(isolated, monkeypatch, capsys):
    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(isolated / "no-sample-here"))
    assert cli.main(["run", "dataset", "--profile", "smoke", "--book-root", str(isolated)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"expected it at {isolated / 'no-sample-here'}" in error
    assert "DATA=synthetic" in error


def test_synthetic_is_a_word_the_runner_passes_on_not_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.injected_parameters("dataset", "smoke", "synthetic", {})["DATA_DIR"] == "synthetic"
    assert runner.injected_parameters("dataset", "smoke", "./synthetic", {})["DATA_DIR"] == str(tmp_path / "synthetic")
    assert "--data synthetic" in " ".join(runner.chapter_command("dataset", "smoke", "synthetic", {}, False, tmp_path))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_passes_data_synthetic_to_the_runner():
    shown = subprocess.run(["make", "-n", "book", "PROFILE=smoke", "DATA=synthetic"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert "cxr run --profile smoke -j 2 --data synthetic" in shown.stdout, shown.stdout + shown.stderr


def _outputs(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(str(v) for cell in notebook.cells for out in cell.get("outputs", [])
                     for v in [out.get("text", ""), *out.get("data", {}).values()])


@pytest.mark.book
def test_a_clone_with_nothing_beside_it_runs_the_dataset_chapter_on_the_real_sample(tmp_path):
    """A copy of the project's files in a folder whose parent holds no shared/: the dataset chapter runs there,
    with its own library (PYTHONPATH, ahead of the editable install), on the sample it carries."""
    clone = tmp_path / "somewhere" / "repo"
    for name in CLONE:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, clone / name)
    assert not (clone.parent / "shared").exists() and not (clone.parent.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in DATA_ENV}
    env.update(PYTHONPATH=str(clone), CXR_RUNS_DIR=str(tmp_path / "runs"), CXR_CACHE_DIR=str(tmp_path / "cache"))
    where = subprocess.run([sys.executable, "-c", "from cxrlib.machinery.inputs import sources; print(sources.SAMPLE_DIR)"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(clone / "data" / "cxr14-sample"), where.stderr  # the clone's own library

    done = subprocess.run([sys.executable, "-m", "cxrlib.machinery.cli", "run", "dataset", "--profile", "smoke"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    count = sample_count(clone / "data" / "cxr14-sample")
    described = f"real NIH ChestX-ray14 sample shipped with the project in data/cxr14-sample ({count} single-label images)"
    assert f"data: {described}" in done.stdout
    text = _outputs(clone / "book" / "chapters" / "dataset.ipynb")
    assert f"<strong>Data:</strong> {described}" in text  # the summary box names the source
    assert "SYNTHETIC" not in text
    assert "NIH, single label" in text and "full label file was not found" not in text  # NIH's label file shipped too
