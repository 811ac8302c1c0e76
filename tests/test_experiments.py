"""Experimenting with parameters, on toy chapters through the real runner: a page records the parameters of every
result it reads and rebuilds exactly from them, a page whose results were replaced says so in the book, and going
back to earlier results puts them back without training."""
from __future__ import annotations

import json
import shutil

import nbformat

from cxrlib.machinery import compare, runner, site
from cxrlib.machinery.chapter import Chapter
from tests.test_rerun import nih_folder, toy_notebooks  # noqa: F401  (a folder the smoke profile accepts)

CHAIN = ("scratch", "fused", "pretrained", "ensemble")  # the ensemble reads the other three


def banner(page) -> str:
    """The stale banner of a page ('' when it has none)."""
    cells = json.loads(page.read_text())["cells"]
    return "".join(c["source"] for c in cells if c.get("id") == site.STALE)


def test_a_page_tells_what_made_it_rebuilds_exactly_and_says_when_it_no_longer_matches(isolated, monkeypatch,
                                                                                      nih_folder):
    monkeypatch.setenv("CXR_NOTEBOOKS_DIR", str(toy_notebooks(isolated / "notebooks", CHAIN)))
    count, lines = isolated / "count", []
    monkeypatch.setenv("TOY_COUNT", str(count))
    first, quiet = isolated / "first", {"log": lambda *a: None}
    (first / "book").mkdir(parents=True)
    shutil.copy(site.REPO_ROOT / "book" / "intro.template.md", first / "book")
    # `cxr run ensemble -p learning_rate=0.002` trains scratch and fused at that rate
    assert runner.run_chapters(["ensemble"], "smoke", nih_folder, {"learning_rate": 0.002}, book_root=first,
                               **quiet) == list(CHAIN)
    page = first / "book" / "chapters" / "ensemble.ipynb"
    ensemble = Chapter("ensemble", "smoke", nih_folder, readonly=True)
    assert "learning_rate (scratch, fused)=0.002" in ensemble.summary_html()
    assert (f" .venv/bin/cxr run ensemble --profile smoke --data {nih_folder.resolve()} -p learning_rate=0.002"
            in ensemble.command())
    assert nbformat.read(page, as_version=4).metadata["cxr"]["reads"]["fused"]["changed"] == {"learning_rate": 0.002}
    assert runner.rerun_from_page(page, book_root=first, **quiet) == []  # up to date
    # the page alone, in empty folders, rebuilds the same results
    second = isolated / "second"
    (second / "book" / "chapters").mkdir(parents=True)
    shutil.copy(page, second / "book" / "chapters" / "renamed.ipynb")
    monkeypatch.setenv("CXR_RUNS_DIR", str(second / "runs"))
    assert runner.rerun_from_page(second / "book" / "chapters" / "renamed.ipynb", book_root=second,
                                  **quiet) == list(CHAIN)
    table = compare.compare_runs(isolated / "runs" / "smoke", second / "runs" / "smoke")
    assert (table["found in"] == "both").all() and table["largest difference"].max() == 0.0
    assert table.loc[("fused", "toy"), "Learning rate (b)"] == 0.002
    monkeypatch.setenv("CXR_RUNS_DIR", str(isolated / "runs"))
    # fused alone at the default: the ensemble page no longer matches, and the book says so on it
    assert runner.run_chapters(["fused"], "smoke", nih_folder, book_root=first, log=lines.append) == ["fused"]
    assert "- fused: running (trained with learning_rate=0.002, asked for the default) with" in "\n".join(lines)
    site.prepare_pages(first, log=lines.append)
    assert lines[-1].endswith("each built with a banner that says which: ensemble")
    assert "fused (it read results made with learning_rate=0.002; those in place were made with the defaults)" in (
        banner(page)) and "cxr run ensemble --profile smoke" in banner(page)
    assert banner(first / "book" / "chapters" / "fused.ipynb") == ""
    # asking for the ensemble's parameters again puts fused's results back: nothing trains, the banner goes
    executions = len(count.read_text().splitlines())
    assert runner.run_chapters(["ensemble"], "smoke", nih_folder, {"learning_rate": 0.002}, book_root=first,
                               **quiet) == []
    assert len(count.read_text().splitlines()) == executions
    said = len(lines)
    site.prepare_pages(first, log=lines.append)
    assert banner(page) == "" and len(lines) == said  # no stale page to name
