"""Re-running a chapter never reuses a result made otherwise, and a failed run never damages a good one.

The runner tests execute small notebooks of their own (CXR_NOTEBOOKS_DIR) through the real runner,
papermill and kernel, so they take seconds, not minutes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.machinery import cli, runner, runs
from cxrlib.machinery.chapter import Chapter
from cxrlib.core.manifest import parameter_names, profile_settings
from tests.conftest import make_rows, write_folder

TOY_BODY = """
import os, time
import pandas as pd
import cxrlib.machinery.chapter as toy
toy.WITHOUT_TENSORFLOW = (CHAPTER,)  # a toy trains nothing: no TensorFlow, no pretrained weights
toy.Chapter.inherited_weights = lambda self: {}
if os.environ.get("TOY_HANDED"):  # the runner must hand the identity over: computing it here fails
    toy.Chapter.chapter_identity = None
ch = toy.open_chapter(CHAPTER, globals(), show=False)
if os.environ.get("TOY_COUNT"):  # one line per execution
    with open(os.environ["TOY_COUNT"], "a") as count:
        count.write(CHAPTER + "\\n")
ch.run.save_history("toy", pd.DataFrame({"epoch": [0], "loss": [float(ch["epochs"])]}))
ch.run.save_metrics("toy", pd.DataFrame({"Accuracy": [0.5], "Learning rate": [ch["learning_rate"]]}, index=["toy"]))
if os.environ.get("TOY_WAIT"):
    open(os.environ["TOY_WAIT"], "w").close()
    time.sleep(300)
if os.environ.get("TOY_FAIL"):
    raise RuntimeError("the chapter raises")
ch.finish()
"""


def toy_notebooks(folder: Path, chapters=("fused",)) -> Path:
    """Notebooks that save a history and a metrics row, and can be made to fail or wait."""
    folder.mkdir(parents=True, exist_ok=True)
    for chapter in chapters:
        params = ["PROFILE = 'cpu'", "DATA_DIR = None"] + [f"{n.upper()} = None" for n in parameter_names(chapter)]
        cell = nbformat.v4.new_code_cell("\n".join(params))
        cell.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(f"CHAPTER = {chapter!r}\n{TOY_BODY}")
        notebook = nbformat.v4.new_notebook(cells=[cell, body])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, folder / f"{chapter}.ipynb")
    return folder


@pytest.fixture
def nih_folder(tmp_path):
    """A tiny NIH folder the smoke profile accepts: 24 images per class, one per patient, so that no patient supplies
    over a quarter of a class's validation or test images (max_patient_share)."""
    return write_folder(tmp_path / "nih", make_rows(per_class=24, images_per_patient=1))


@pytest.fixture
def toy(isolated, monkeypatch, nih_folder):
    """Toy notebooks, a book root, run folders and a small NIH folder, all under tmp_path."""
    monkeypatch.setenv("CXR_NOTEBOOKS_DIR", str(toy_notebooks(isolated / "notebooks")))
    for name in ("TOY_FAIL", "TOY_COUNT", "TOY_HANDED", "TOY_WAIT"):
        monkeypatch.delenv(name, raising=False)
    (isolated / "book").mkdir()
    return isolated, nih_folder


def snapshot(root: Path) -> dict:
    """Every published file (results, page, stamp, log) and its bytes; work folders and failures aside."""
    files = {}
    for base in (root / "runs" / "smoke", root / "book" / "chapters"):
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and "/." not in f"/{relative}" and ".failed." not in path.name:
                files[relative] = path.read_bytes()
    return files


def run(root, data, **params):
    return runner.run_chapters(["fused"], "smoke", data, params, book_root=root, log=lambda *a: None)


def test_a_failing_chapter_leaves_the_last_good_results_untouched(toy, monkeypatch):
    root, data = toy
    assert run(root, data) == ["fused"]
    good = snapshot(root)
    assert "runs/smoke/fused/chapter.json" in good and "book/chapters/fused.ipynb" in good
    with pytest.raises(runner.RunnerError, match="parameter epochs='abc' is not allowed"):
        run(root, data, epochs="abc")
    assert snapshot(root) == good
    monkeypatch.setenv("TOY_FAIL", "1")
    with pytest.raises(runner.RunnerError, match="previous results and page are untouched"):
        run(root, data, epochs=3)
    assert snapshot(root) == good  # byte for byte
    assert (root / "book" / "chapters" / "fused.failed.ipynb").is_file()
    assert (root / "runs" / "smoke" / "fused.failed.log").is_file()
    assert run(root, data) == []  # the good results are still the up-to-date ones
    monkeypatch.delenv("TOY_FAIL")
    assert run(root, data, epochs=3) == ["fused"]  # no manual clean-up needed
    history = pd.read_csv(root / "runs" / "smoke" / "fused" / "histories" / "toy.csv")
    assert history["loss"].tolist() == [3.0]
    assert not (root / "book" / "chapters" / "fused.failed.ipynb").exists()


def test_ctrl_c_stops_with_one_line_and_exit_130(toy):
    root, data = toy
    assert run(root, data) == ["fused"]
    good = snapshot(root)
    ready = root / "ready"
    env = {**os.environ, "TOY_WAIT": str(ready)}
    # as `cxr run` does it, with a book root of the test's own
    code = (f"import sys; from cxrlib.machinery import runner\n"
            f"try:\n    runner.run_chapters(['fused'], 'smoke', {str(data)!r}, {{'epochs': 4}}, "
            f"book_root={str(root)!r}, log=lambda *a: None)\n"
            f"except runner.Interrupted as err:\n    print('cxr:', err, file=sys.stderr); sys.exit(130)\n")
    # Ctrl-C's default action, even where this suite runs as a background job (which inherits SIGINT ignored)
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready.exists(), process.communicate()
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted chapter 'fused'" in lines[0] and "resumes" in lines[0], err
    assert snapshot(root) == good


def test_cli_ctrl_c_exit_code(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise runner.Interrupted("interrupted chapter 'fused'; the previous results and page are untouched")

    monkeypatch.setattr(cli, "run_chapters", interrupted)
    assert cli.main(["run", "fused"]) == 130
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("param, value", [("epochs", "abc"), ("learning_rate", -1.0), ("fractions", [0.5, 0.2, 0.2]),
                                          ("class_weight", "inverse"), ("max_per_class", 0), ("backbones", ["vgg"])])
def test_bad_parameters_are_refused_before_any_data_is_read(isolated, monkeypatch, param, value):
    import cxrlib.machinery.inputs

    def no_data(*args, **kwargs):
        raise AssertionError("data were read before the parameters were checked")

    monkeypatch.setattr(cxrlib.machinery.inputs, "load_data", no_data)
    chapter = "pretrained" if param == "backbones" else "fused"
    with pytest.raises(runner.RunnerError, match=rf"parameter {param}=.*is not allowed: "):
        runner.run_chapters([chapter], "smoke", params={param: value}, book_root=isolated)
    assert cli.main(["run", chapter, "-p", f"{param}={value}"]) == 2


def test_a_split_without_some_class_stops_before_any_chapter_runs(isolated):
    rows = [r for r in make_rows() if not (r["Finding Labels"] == "Atelectasis" and r["Patient ID"] != 1021)]
    data = write_folder(isolated / "one-patient", rows)
    with pytest.raises(runner.RunnerError, match="Atelectasis"):
        runner.run_chapters(["fused"], "smoke", data, book_root=isolated, log=lambda *a: None)
    assert not (isolated / "book" / "chapters").exists()


def identities(data, **params):
    ids = runner.Identities("smoke", data)
    return {c: ids.of(c, runner.injected_parameters(c, "smoke", data, params))
            for c in runner.chapter_order(["fused_grid", "scratch"])}


def test_changed_settings_change_exactly_the_affected_chapters(isolated, nih_folder):
    base = identities(nih_folder)
    assert identities(nih_folder) == base  # stable
    for change in ({"seed": 7}, {"max_per_class": 4}, {"fractions": (0.5, 0.25, 0.25)}):
        changed = identities(nih_folder, **change)
        assert all(changed[c] != base[c] for c in base), change
    units = identities(nih_folder, dense_units=64)
    assert units["scratch"] == base["scratch"]  # does not take dense_units
    assert units["fused"] != base["fused"] and units["fused_grid"] != base["fused_grid"]  # and its reader


def tiny_builder(image_size):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((image_size, image_size, 1)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])


def tiny_fit(data, runs_root, **params):
    chapter = Chapter("fused", "smoke", data, runs_root, **params)
    result = chapter.fit("tiny", lambda: tiny_builder(16),
                         lambda split, shuffle, start=0: chapter.dataset(split, 16, shuffle, start_epoch=start),
                         {"builder": "tiny"})
    chapter.finish()
    return chapter, result


def test_a_model_is_reused_only_when_everything_that_made_it_is_identical(isolated, nih_folder, capsys):
    runs_root = isolated / "runs"
    first, made = tiny_fit(nih_folder, runs_root)
    record = runs_root / "smoke" / "fused" / "models" / "tiny.json"
    assert pd.read_json(record, typ="series")["identity"] == made.identity
    _, again = tiny_fit(nih_folder, runs_root)
    assert again.identity == made.identity and "reusing it" in capsys.readouterr().out
    _, fewer = tiny_fit(nih_folder, runs_root, max_per_class=4)
    assert fewer.identity != made.identity and "reusing" not in capsys.readouterr().out
    assert pd.read_json(record, typ="series")["identity"] == fewer.identity  # the record matches the weights


def test_replacing_an_image_with_another_of_the_same_size_invalidates_results(isolated, nih_folder, capsys):
    runs_root = isolated / "runs"
    chapter, made = tiny_fit(nih_folder, runs_root)
    target = nih_folder / "images" / chapter.data.split("train")["Image Index"][0]
    size = target.stat().st_size
    pixels = np.asarray(Image.open(target))
    for shift in range(1, 255):  # a different picture whose PNG has exactly the same number of bytes
        Image.fromarray(np.roll(pixels, shift, axis=1)).save(target)
        if target.stat().st_size == size:
            break
    assert target.stat().st_size == size
    capsys.readouterr()
    _, after = tiny_fit(nih_folder, runs_root)
    assert after.identity != made.identity and "reusing" not in capsys.readouterr().out


def test_results_reach_the_run_folder_only_when_the_chapter_finishes(isolated, nih_folder):
    chapter = Chapter("fused", "smoke", nih_folder, isolated / "runs")
    chapter.run.save_metrics("tiny", pd.DataFrame({"Accuracy": [1.0]}, index=["tiny"]))
    assert not (isolated / "runs" / "smoke" / "fused").exists()
    chapter.finish()
    assert (isolated / "runs" / "smoke" / "fused" / "metrics" / "tiny.csv").is_file()


def test_a_notebook_run_by_hand_and_the_runner_reach_the_same_identity(isolated, nih_folder):
    """Both go through the same identity: the runner's stamp is what the chapter computes in its kernel."""
    for params in ({}, {"epochs": 3, "seed": 5}):
        stamp = runner.Identities("smoke", nih_folder).of("scratch", runner.injected_parameters(
            "scratch", "smoke", nih_folder, params))
        by_hand = Chapter("scratch", "smoke", nih_folder, isolated / "runs", **params)
        assert by_hand.identity == stamp


def test_a_chapter_the_runner_runs_takes_the_identities_it_is_handed(isolated, nih_folder, monkeypatch):
    """The runner computes a chapter's identity, data identity included, once; the kernel takes both as handed."""
    ids = runner.Identities("smoke", nih_folder)
    stamp = ids.of("scratch", runner.injected_parameters("scratch", "smoke", nih_folder, {}))
    parts = {**ids.asked["scratch"]["parts"], "data": "the runner's data identity"}
    monkeypatch.setenv(runs.RUNNER_ENV, json.dumps({"chapter": "scratch", "identity": stamp, "parts": parts}))
    chapter = Chapter("scratch", "smoke", nih_folder, isolated / "runs")
    assert (chapter.identity, chapter.data_id) == (stamp, "the runner's data identity")


def test_independent_chapters_run_at_once_in_processes_of_their_own(isolated, monkeypatch, nih_folder):
    """`cxr run -j 2`: scratch and fused have no dependency on each other; each runs as its own `cxr run`, with the
    data identity the parent computed (the parent loads the data once; no child loads it)."""
    monkeypatch.setenv("CXR_NOTEBOOKS_DIR", str(toy_notebooks(isolated / "notebooks", ("scratch", "fused"))))
    (isolated / "book").mkdir()
    lines = []
    executed = runner.run_chapters(["scratch", "fused"], "smoke", nih_folder, {"epochs": 3}, book_root=isolated,
                                   log=lines.append, jobs=2)
    assert sorted(executed) == ["fused", "scratch"]
    for chapter in executed:
        history = pd.read_csv(isolated / "runs" / "smoke" / chapter / "histories" / "toy.csv")
        assert history["loss"].tolist() == [3.0]  # the parameter reached the child process
        assert (isolated / "book" / "chapters" / f"{chapter}.ipynb").is_file()
        child = (runner.outcome_file("smoke", chapter).with_suffix(".out")).read_text()
        assert "data: " not in child and f"- {chapter}: running" in child
    assert sum(line.startswith("data: ") for line in lines) == 1
    assert runner.run_chapters(["scratch", "fused"], "smoke", nih_folder, {"epochs": 3}, book_root=isolated,
                               log=lines.append, jobs=2) == []  # and the children's stamps hold


# --- experiments: nothing lost, and the runner says why it runs --------------------------------------------

def test_going_back_to_earlier_parameters_puts_back_what_was_kept(toy, monkeypatch):
    """defaults -> experiment -> defaults -> experiment executes the chapter twice, not four times."""
    root, data = toy
    count, lines = root / "count", []
    monkeypatch.setenv("TOY_COUNT", str(count))

    def go(**params):
        return runner.run_chapters(["fused"], "smoke", data, params, book_root=root, log=lines.append)

    def loss():
        return pd.read_csv(root / "runs" / "smoke" / "fused" / "histories" / "toy.csv")["loss"].tolist()

    default = profile_settings("smoke")["epochs"]
    assert go() == ["fused"]
    page = (root / "book" / "chapters" / "fused.ipynb").read_bytes()
    assert go(epochs=3) == ["fused"] and loss() == [3.0]
    assert f"- fused: running (trained with the default epochs={default}, asked for 3) with" in "\n".join(lines)
    assert go() == [] and loss() == [float(default)]  # put back, page and all
    assert (root / "book" / "chapters" / "fused.ipynb").read_bytes() == page
    assert go(epochs=3) == [] and loss() == [3.0]
    assert count.read_text().splitlines() == ["fused", "fused"]
    assert sum("- fused: restored" in line for line in lines) == 2
    assert cli.main(["clean"]) == 0  # the kept results go; going back runs again, and says why
    assert go() == ["fused"] and "running (trained with epochs=3, asked for the default)" in lines[-3]


def test_why_a_chapter_runs_in_words():
    made = {"settings": {"learning_rate": 0.001, "epochs": 2}, "changed": {"learning_rate": 0.001},
            "identity_parts": {"upstream": {}, "data": "d", "notebook": "n", "code": "c"}}
    asked = {"settings": {"learning_rate": 0.0001, "epochs": 3}, "changed": {},
             "parts": {"upstream": {}, "data": "d", "notebook": "n", "code": "c"}}
    assert runner.why_run("fused", made, asked) == ("the default epochs changed from 2 to 3; "
                                                    "trained with learning_rate=0.001, asked for the default")
    asked = {"settings": made["settings"], "changed": made["changed"],
             "parts": {"upstream": {"scratch": "s2"}, "data": "d2", "notebook": "n", "code": "c2"}}
    assert runner.why_run("ensemble", {**made, "identity_parts": {**made["identity_parts"], "upstream": {"scratch": "s"}}},
                          asked) == "scratch's results changed; the data changed; cxrlib's code changed"
    assert runner.why_run("fused", {}, asked) == "no results of it yet"


def test_kept_results_stay_within_their_budget_the_oldest_dropped_first(tmp_path):
    profile = tmp_path / "smoke"
    for age, made in enumerate("abc"):
        folder = profile / ".kept" / "fused" / made / "results"
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(b"x" * 1000)
        os.utime(folder.parent, (age, age))  # a is the oldest
    (profile / "fused").mkdir()
    os.link(profile / ".kept" / "fused" / "c" / "results" / "model.keras", profile / "fused" / "model.keras")
    assert runs.trim_kept(profile, budget=1500) == [profile / ".kept" / "fused" / "a"]  # c shares its bytes
    assert len(runs.trim_kept(profile, budget=-1)) == 2 and not list(profile.glob(".kept/*/*"))  # `cxr clean`


def test_a_model_kept_for_other_settings_is_reused_not_trained_again(isolated, nih_folder, monkeypatch):
    trained, train = [], Chapter._train
    monkeypatch.setattr(Chapter, "_train", lambda self, name, *args: trained.append(name) or train(self, name, *args))
    for params in ({}, {"epochs": 3}, {}, {"epochs": 3}):
        tiny_fit(nih_folder, isolated / "runs", **params)
    assert trained == ["tiny", "tiny"]


def test_the_runner_hands_each_chapter_its_identity_and_reads_each_data_selection_once(toy, monkeypatch):
    import cxrlib.machinery.inputs

    root, data = toy
    monkeypatch.setenv("CXR_NOTEBOOKS_DIR", str(toy_notebooks(root / "notebooks", ("scratch", "fused"))))
    monkeypatch.setenv("TOY_HANDED", "1")  # a kernel that computes its identity itself fails
    loads, load_for = [], cxrlib.machinery.inputs.load_for
    monkeypatch.setattr(cxrlib.machinery.inputs, "load_for", lambda *a: loads.append(a) or load_for(*a))
    assert runner.run_chapters(["scratch", "fused"], "smoke", data, book_root=root, log=lambda *a: None) == [
        "scratch", "fused"]
    assert len(loads) == 1  # both chapters read the same selection
    for chapter in ("scratch", "fused"):
        info = runs.read_json(root / "runs" / "smoke" / chapter / "chapter.json")
        assert info["identity"] == (root / "book" / "chapters" / f"{chapter}.stamp").read_text()


def test_the_scheduler_reads_what_a_child_did_from_its_exit_status_and_files(isolated):
    class Child:
        returncode = 0

    outcome = runner.outcome_file("smoke", "fused")
    assert runner.finished("fused", Child, "smoke")["outcome"] == "failed"  # it wrote nothing
    runs.write_json(outcome, {"outcome": "ran", "why": "asked"})
    assert runner.finished("fused", Child, "smoke") == {"outcome": "ran", "why": "asked"}
    Child.returncode = 2
    outcome.with_suffix(".out").write_text("1 chapter(s) run\ncxr: error: chapter 'fused' failed in cell 3\n")
    assert runner.finished("fused", Child, "smoke") == {"outcome": "failed",
                                                         "why": "cxr: error: chapter 'fused' failed in cell 3"}
