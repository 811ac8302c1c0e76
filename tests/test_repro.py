"""Reproducibility: lock hash, hash-checked install, run folders compared, pages re-run, identical reruns."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from cxrlib.machinery import cli, compare
from cxrlib.machinery import repro, runner
from cxrlib.machinery.runs import ChapterRun, predictions_frame
from cxrlib.science.metrics import metrics_row
from tests.conftest import SAMPLE
from tests.test_book import book_copy
from tests.test_rerun import nih_folder  # noqa: F401  (a folder the smoke profile accepts)

ROOT = Path(__file__).resolve().parents[1]


# --- the lock ---------------------------------------------------------------------------------------------

def test_lock_hash_is_the_sha256_of_the_file(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_bytes(b"abc")
    assert repro.lock_hash(lock) == "ba7816bf8f01"  # SHA-256("abc") begins ba7816bf8f01cfea...
    assert repro.lock_hash(tmp_path / "absent.txt") == "none"
    assert len(repro.lock_hash()) == 12  # this Python's lock exists in the repository


def test_locked_versions_reads_pins_and_skips_hashes_and_comments(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nJupyter_Book==1.0.4.post1 \\\n    --hash=sha256:ab \\\n    --hash=sha256:cd\n"
                    "    # via cxrlib\nkeras[extra]==3.15.1 ; python_version >= '3.11' \\\n    --hash=sha256:ef\n")
    assert repro.locked_versions(lock) == {"jupyter-book": "1.0.4.post1", "keras": "3.15.1"}


def test_environment_differences_name_package_and_both_versions(tmp_path):
    from importlib.metadata import version

    lock = tmp_path / "lock.txt"
    lock.write_text(f"pytest=={version('pytest')}\npyyaml==0.0.1\nno-such-package-here==1.0\n")
    assert repro.environment_differences(lock) == [f"pyyaml installed {version('pyyaml')}, locked 0.0.1",
                                                   "no-such-package-here installed missing, locked 1.0"]
    assert "differs from it in 2 package(s)" in repro.lock_text(lock)


def _wheel(folder: Path) -> Path:
    """A one-module wheel written by hand, so installing it needs no network."""
    path = folder / "tinypkg-0.1-py3-none-any.whl"
    files = {"tinypkg/__init__.py": b"VALUE = 1\n",
             "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
             "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + "tinypkg-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**files, "tinypkg-0.1.dist-info/RECORD": record.encode()}.items():
            archive.writestr(name, data)
    return path


def _make_env(tmp_path: Path, lock: Path):
    """`make env` with a lock of our own, into a fresh venv under tmp_path; no index is consulted."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "emptyproj"\nversion = "0"\n'
                                              '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                                              '[tool.setuptools]\npy-modules = []\n')
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    return subprocess.run(["make", "env", f"PYTHON={sys.executable}", f"LOCK={lock}", "VENV=venv"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_an_edited_hash_in_the_lock_stops_the_install_with_a_clear_message(tmp_path):
    wheel = _wheel(tmp_path)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = tmp_path / "lock.txt"
    lock.write_text(f"{wheel.as_uri()} --hash=sha256:{digest[:-1]}{'0' if digest[-1] != '0' else '1'}\n")
    done = _make_env(tmp_path, lock)
    assert done.returncode != 0
    assert "DO NOT MATCH THE HASHES" in done.stderr and f"installing from {lock} failed" in done.stderr
    assert not (tmp_path / "venv" / ".installed").exists()


# --- run folders compared ---------------------------------------------------------------------------------

def _save(root: Path, chapter: str, model: str, probs, seconds: float = 1.0):
    """One model's test predictions and metrics row, as a chapter saves them."""
    run = ChapterRun("smoke", chapter, root)
    labels = np.arange(len(probs)) % 4
    run.save_predictions(model, "test", predictions_frame([f"{i}.png" for i in range(len(probs))], labels, probs))
    run.save_metrics(model, metrics_row(model, labels, probs, seconds))


def _probs(shift: float = 0.0):
    probs = np.full((8, 4), 0.1)
    probs[np.arange(8), np.arange(8) % 4] = 0.7 - shift
    probs[np.arange(8), (np.arange(8) + 1) % 4] += shift
    return probs


def test_identical_runs_differ_by_zero_whatever_their_timings(tmp_path):
    _save(tmp_path / "a", "fused", "fused", _probs(), seconds=1.0)
    _save(tmp_path / "b", "fused", "fused", _probs(), seconds=9.0)
    table = compare.compare_runs(tmp_path / "a" / "smoke", tmp_path / "b" / "smoke")
    assert list(table.index) == [("fused", "fused")]
    assert table.loc[("fused", "fused"), "largest difference"] == 0.0
    assert not any("time" in c.lower() for c in table.columns)
    assert table.loc[("fused", "fused"), "Accuracy (a)"] == table.loc[("fused", "fused"), "Accuracy (b)"] == 1.0


def test_largest_difference_is_the_known_one(tmp_path):
    # shifting 0.35 of the true class's probability to the next class in two of eight rows: the
    # probabilities differ by 0.35 and two predictions become wrong, so accuracy falls by 2/8
    _save(tmp_path / "a", "scratch", "cnn", _probs())
    shifted = _probs()
    shifted[[0, 5], [0, 1]] -= 0.35
    shifted[[0, 5], [1, 2]] += 0.35
    _save(tmp_path / "b", "scratch", "cnn", shifted)
    _save(tmp_path / "b", "fused", "fused", _probs())
    table = compare.compare_runs(tmp_path / "a", tmp_path / "b")  # folders holding profiles
    row = table.loc[("smoke/scratch", "cnn")]
    assert row["Accuracy (a)"] - row["Accuracy (b)"] == pytest.approx(0.25)
    assert row["test probabilities"] == pytest.approx(0.35)
    metrics = [c[:-4] for c in row.index if c.endswith(" (a)")]
    assert row["largest difference"] == max(0.35, *(abs(row[f"{m} (a)"] - row[f"{m} (b)"]) for m in metrics))
    assert table.loc[("smoke/fused", "fused"), "found in"] == "b only"
    text = compare.compare_text(tmp_path / "a", tmp_path / "b")
    assert "smoke/fused/fused (b only)" in text and f"{row['largest difference']:.6g}" in text


def test_compare_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        compare.compare_runs(tmp_path / "nowhere", tmp_path)


def test_cxr_compare_prints_the_table(tmp_path, capsys):
    _save(tmp_path / "a", "fused", "fused", _probs())
    _save(tmp_path / "b", "fused", "fused", _probs())
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "largest difference over every metric and test probability of the models in both: 0" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2


def test_compare_fits_100_columns_names_the_parameters_that_differ_and_keeps_a_wide_mode(tmp_path, capsys):
    for folder, rate in (("a", 0.001), ("b", 0.0001)):
        for chapter, model in (("fused", "fused"), ("pretrained", "resnet152_fine_tuned_from_conv5_block1_out_aug")):
            _save(tmp_path / folder, chapter, model, _probs(0.1 if folder == "b" and chapter == "fused" else 0.0))
            ChapterRun("smoke", chapter, tmp_path / folder).write_info(
                {"settings": {"learning_rate": rate if chapter == "fused" else 0.0001, "epochs": 2}})
    a, b = tmp_path / "a" / "smoke", tmp_path / "b" / "smoke"
    text = compare.compare_text(a, b)
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "  learning_rate: 0.001 (a), 0.0001 (b) in fused" in text.splitlines()
    fused = next(line for line in text.splitlines() if line.startswith("fused/fused"))
    assert fused.split()[1:4] == ["0.1542", "both", "Loss"]  # the largest difference, where it is
    wide = compare.compare_text(a, b, wide=True)
    assert "Accuracy (a)" in wide and max(len(line) for line in wide.splitlines()) > 100
    assert cli.main(["compare", str(a), str(b), "--wide"]) == 0 and "Accuracy (b)" in capsys.readouterr().out


# --- the command that rebuilds a page ----------------------------------------------------------------------

def test_rebuild_command_reads_back_as_the_same_parameters():
    changed = {"epochs": 20, "learning_rate": 1e-4, "resizer": False, "caps": {"train": 5}, "fractions": (0.6, 0.2, 0.2)}
    command = repro.rebuild_command("fused", "cpu", changed, "/data/nih x", "abc1234")
    assert command.startswith("git checkout abc1234 && .venv/bin/cxr run fused --profile cpu --data '/data/nih x' -p ")
    import shlex

    words = shlex.split(command.split(" && ")[1])
    pairs = [words[i + 1] for i, w in enumerate(words) if w == "-p"]
    assert cli.parse_assignments(pairs) == {"epochs": 20, "learning_rate": 1e-4, "resizer": False,
                                               "caps": {"train": 5}, "fractions": [0.6, 0.2, 0.2]}


def _page(path: Path, parameters=None, chapter="fused") -> Path:
    notebook = nbformat.v4.new_notebook()
    if parameters is not None:
        notebook.metadata["papermill"] = {"parameters": parameters, "input_path": f"notebooks/{chapter}.ipynb"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def test_a_page_says_its_chapter_whatever_its_file_is_called(tmp_path, monkeypatch):
    page = _page(tmp_path / "my copy.ipynb", {"PROFILE": "smoke", "DATA_DIR": "/d", "EPOCHS": 3})
    assert repro.page_record(page) == ("fused", "smoke", "/d", {"fused": {"epochs": 3}})
    calls = []
    monkeypatch.setattr(runner, "run_chapters", lambda *a, **k: calls.append((a, k)) or ["fused"])
    assert runner.rerun_from_page(page, book_root=tmp_path, log=lambda _: None) == ["fused"]
    (args, kwargs), = calls
    assert args == (["fused"], "smoke", "/d", {"epochs": 3}, False) and kwargs["book_root"] == tmp_path


def test_from_page_reruns_every_chapter_a_page_read_with_its_own_parameters(tmp_path, monkeypatch):
    """A page whose results were made by chapters run alone with parameters of their own (no single `cxr run` gives
    them) is rebuilt chapter by chapter, in order, each with its own."""
    page = _page(tmp_path / "ensemble.ipynb", {"PROFILE": "smoke"}, "ensemble")
    notebook = nbformat.read(page, as_version=4)
    notebook.metadata["cxr"] = {"chapter": "ensemble", "identity": "e", "changed": {}, "reads": {
        "scratch": {"identity": "s", "changed": {}}, "fused": {"identity": "f", "changed": {"learning_rate": 0.001}},
        "pretrained": {"identity": "p", "changed": {}}}}
    nbformat.write(notebook, page)
    chain = repro.page_record(page)[3]
    assert repro.run_parameters(chain) is None  # learning_rate=0.001 would retrain scratch too
    assert repro.rebuild_command("ensemble", "smoke", None) == ".venv/bin/cxr run --from-page book/chapters/ensemble.ipynb"
    calls = []
    monkeypatch.setattr(runner, "run_chapters", lambda names, *a, **k: calls.append((names, a[2], k)) or names)
    assert runner.rerun_from_page(page, book_root=tmp_path, log=lambda _: None) == list(chain)
    assert [(names, params, kwargs["only"]) for names, params, kwargs in calls] == [
        (["scratch"], {}, True), (["fused"], {"learning_rate": 0.001}, True), (["pretrained"], {}, True),
        (["ensemble"], {}, True)]


def test_pages_that_cannot_be_rerun_are_named(tmp_path):
    with pytest.raises(runner.RunnerError, match="names no chapter"):
        repro.page_record(_page(tmp_path / "notes.ipynb", {}, chapter="notes"))
    with pytest.raises(runner.RunnerError, match="no parameters recorded by papermill"):
        repro.page_record(_page(tmp_path / "fused.ipynb"))
    with pytest.raises(runner.RunnerError, match="does not exist"):
        repro.page_record(tmp_path / "dataset.ipynb")
    assert cli.main(["run", "fused", "--from-page", str(tmp_path / "fused.ipynb")]) == 2


def test_from_page_reruns_a_toy_chapter_with_its_data_and_parameters(isolated, monkeypatch, nih_folder):
    """Seconds, not minutes: the runner's toy 'fused' notebook (tests/test_rerun.py) through the real runner."""
    from tests.test_rerun import toy_notebooks

    monkeypatch.setenv("CXR_NOTEBOOKS_DIR", str(toy_notebooks(isolated / "notebooks")))
    _freeze_code_digest(monkeypatch)
    first, second = isolated / "first", isolated / "second"
    quiet = {"log": lambda *a: None}
    assert runner.run_chapters(["fused"], "smoke", nih_folder, {"epochs": 3}, book_root=first, **quiet) == ["fused"]
    page = first / "book" / "chapters" / "fused.ipynb"
    chapter, profile, data_dir, chain = repro.page_record(page)
    assert chapter == "fused" and chain == {"fused": {"epochs": 3}} and data_dir == str(nih_folder.resolve())
    shutil.copytree(first / "book", second / "book")
    (second / "book" / "chapters" / "fused.stamp").unlink()
    assert runner.rerun_from_page(second / "book" / "chapters" / "fused.ipynb", book_root=second, **quiet) == ["fused"]
    stamp = page.with_suffix(".stamp").read_text()
    assert (second / "book" / "chapters" / "fused.stamp").read_text() == stamp
    assert ChapterRun("smoke", "fused").read_info()["identity"] == stamp
    history = pd.read_csv(isolated / "runs" / "smoke" / "fused" / "histories" / "toy.csv")
    assert history["loss"].tolist() == [3.0]  # the recorded epochs reached the rerun


# --- reruns (slow: they execute chapters) -----------------------------------------------------------------

def _freeze_code_digest(monkeypatch):
    """Stamps include the library's code digest: edits to cxrlib/ by someone else while a test runs
    (a shared checkout) must not pass for a difference made by --from-page."""
    from cxrlib.machinery import identity

    frozen, whole = identity.code_digest(), identity.library_digest()
    monkeypatch.setattr(identity, "code_digest", lambda: frozen)
    monkeypatch.setattr(identity, "library_digest", lambda: whole)


def _use_sample(monkeypatch):
    """The real sample shipped in data/ (named, so a CXR_SAMPLE_DIR of the caller's cannot leak in)."""
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(SAMPLE))


def _run_in(monkeypatch, folder: Path, chapters, **kwargs) -> Path:
    """Run chapters with run and cache folders and a book root of their own; return the book root."""
    monkeypatch.setenv("CXR_CACHE_DIR", str(folder / "cache"))
    monkeypatch.setenv("CXR_RUNS_DIR", str(folder / "runs"))
    root = book_copy(folder)
    assert runner.run_chapters(chapters, profile="smoke", book_root=root, **kwargs) == chapters
    return root


def _without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if not compare.TIMING.search(str(c))]]


@pytest.mark.book
def test_training_twice_from_empty_folders_gives_identical_results(tmp_path, monkeypatch):
    _use_sample(monkeypatch)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        _run_in(monkeypatch, folder, ["fused"])
    runs = [f / "runs" / "smoke" / "fused" for f in (first, second)]
    predictions = sorted(p.name for p in (runs[0] / "predictions").glob("*.csv"))
    assert predictions and predictions == sorted(p.name for p in (runs[1] / "predictions").glob("*.csv"))
    for name in predictions:  # bit for bit: the CSV files hold every float's repr
        assert (runs[0] / "predictions" / name).read_bytes() == (runs[1] / "predictions" / name).read_bytes(), name
    for kind in ("histories", "metrics"):
        names = sorted(p.name for p in (runs[0] / kind).glob("*.csv"))
        assert names and names == sorted(p.name for p in (runs[1] / kind).glob("*.csv"))
        for name in names:
            a, b = (_without_timing(pd.read_csv(r / kind / name)) for r in runs)
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    table = compare.compare_runs(first / "runs", second / "runs")
    assert (table["found in"] == "both").all() and table["largest difference"].max() == 0.0


@pytest.mark.book
def test_a_page_rerun_with_from_page_has_the_original_stamp(tmp_path, monkeypatch):
    _use_sample(monkeypatch)
    _freeze_code_digest(monkeypatch)
    original = _run_in(monkeypatch, tmp_path / "original", ["dataset"], params={"seed": 7})
    page = original / "book" / "chapters" / "dataset.ipynb"
    assert repro.page_record(page)[3] == {"dataset": {"seed": 7}}
    again = book_copy(tmp_path / "again")
    copied = again / "book" / "chapters" / "dataset.ipynb"
    copied.parent.mkdir(parents=True)
    shutil.copy(page, copied)
    assert runner.rerun_from_page(copied, book_root=again, force=True) == ["dataset"]
    stamp = page.with_suffix(".stamp").read_text()
    assert (again / "book" / "chapters" / "dataset.stamp").read_text() == stamp
    assert ChapterRun("smoke", "dataset").read_info()["identity"] == stamp
    assert repro.page_record(copied) == repro.page_record(page)
