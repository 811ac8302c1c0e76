"""The book's page parts without a browser: table style, labels that travel, the build page, the steps
around jupyter-book, the notebooks' structure, and the figure style."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cxrlib import book
from cxrlib.config import PROFILES

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("value, text", [(2560.0, "2,560"), (math.nan, "–"), (None, "–"), (0.25, "0.250"),
                                         (1.0, "1.000"), (np.int64(12), "12"), (0.4, "0.400"), ("VGG16", "VGG16")])
def test_cell_text_known_answers(value, text):
    assert book.cell_text(value) == text


def test_table_style_keeps_whole_columns_whole_and_turns_wide_tables():
    frame = pd.DataFrame({"units": [2560.0, 512.0], "accuracy": [1.0, 0.25], "auc": [math.nan, 0.4]}, index=["a", "b"])
    shown = book.table_style(frame).data
    assert shown.loc["a"].tolist() == ["2,560", "1.000", "–"] and shown.loc["b"].tolist() == ["512", "0.250", "0.400"]
    wide = pd.DataFrame(np.full((2, 12), 0.5), columns=[f"m{i}" for i in range(12)])
    assert book.table_style(wide).data.shape == (12, 2)
    assert [c.shape[1] for c in book.table_chunks(wide, 5)] == [5, 5, 2]


def test_limiting_factors_list_what_the_run_records():
    smoke = book.limiting_factors(PROFILES["smoke"], "real NIH sample at x (422 images)",
                                  "random weights (no pretrained weights)")
    assert smoke == ["2 epochs (report: up to 30)", "24 training images per class", "87 px images (report: 227)",
                     "32 px backbone inputs (report: 224)", "no pretrained weights", "the 422-image real sample"]
    assert book.limiting_factors({**PROFILES["full"], "allow_random_weights": False}, "NIH ChestX-ray14 at /d",
                                 "ImageNet") == []
    assert "synthetic images" in book.limiting_factors({}, "SYNTHETIC images")


def test_profile_in_words_and_model_label():
    assert book.profile_in_words("smoke", PROFILES["smoke"]) == (
        "smoke build: 2 epochs, 24 training images per class; for checking the machinery, not for reading the numbers")
    assert book.model_label("VGG16", pretrained=False) == "VGG16 (no pretrained weights)"
    assert book.model_label("VGG16 (no pretrained weights)", pretrained=False) == "VGG16 (no pretrained weights)"
    assert book.model_label("VGG16", pretrained=True) == "VGG16"


def test_summary_box_says_what_the_numbers_are_worth():
    box = book.summary_box(profile="smoke", settings=PROFILES["smoke"], data="real sample <x>", counts="160 images",
                           weights="none", changed={"epochs": 3}, commit="abc123", provenance="**Provenance.** `smoke`",
                           command="cxr run fused")
    assert box.startswith('<div class="cxr-summary"') and "for checking the machinery" in box
    assert "real sample &lt;x&gt;" in box and "epochs=3" in box and "<code>abc123</code>" in box
    assert "<details><summary>Full provenance</summary><p><strong>Provenance.</strong> <code>smoke</code>" in box
    assert "cxr run fused" in box


def fake_book(tmp_path: Path) -> tuple:
    """A book root with one executed chapter and a run folder with two chapters' metrics and timings."""
    root, runs = tmp_path / "root", tmp_path / "runs"
    chapters = root / "book" / "chapters"
    chapters.mkdir(parents=True)
    notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "PROFILE = 'smoke'",
                           "outputs": [{"output_type": "display_data", "data": {
                               "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "w"}}]}],
                "metadata": {"papermill": {"parameters": {"PROFILE": "smoke"}}, "widgets": {"state": {}}}}
    (chapters / "fused.ipynb").write_text(json.dumps(notebook))
    for chapter, rows, weights in (("fused", {"fused": 0.4, "base": 0.3}, None),
                                   ("pretrained", {"vgg16": 0.5}, "random weights (no pretrained weights)")):
        folder = runs / "smoke" / chapter
        (folder / "metrics").mkdir(parents=True)
        info = {"settings": PROFILES["smoke"], "data": "real NIH sample (422 images)", "commit": "abc123"}
        if weights:
            info["weights"] = weights
        (folder / "chapter.json").write_text(json.dumps(info))
        for name, f1 in rows.items():
            pd.DataFrame({"Accuracy": [f1 + 0.1], "F1-macro": [f1], "ROC AUC": [0.7]}, index=[name]).to_csv(
                folder / "metrics" / f"{name}.csv")
    (runs / "smoke" / "timings.json").write_text(json.dumps({"fused": 20.4, "pretrained": 61.0}))
    return root, runs


def test_build_page_from_the_run_folder(tmp_path):
    root, runs = fake_book(tmp_path)
    text = book.build_page(root, runs, today="2026-01-02")
    assert "**smoke build: 2 epochs, 24 training images per class" in text and "2026-01-02" in text
    assert "`abc123`" in text and "tensorflow" in text
    assert "| fused network | fused | 0.500 / 0.618 | 0.400 / 0.606 | 0.700 / 0.836 |" in text
    assert "vgg16 (no pretrained weights)" in text and "| the build's limits (above); 32 px backbone inputs (report: 224); no pretrained weights |" in text
    assert "| fused | 20 |" in text and "| pretrained | 61 |" in text


def test_prepare_pages_hides_injected_cells_and_widget_state(tmp_path):
    root, runs = fake_book(tmp_path)
    book.prepare_pages(root, runs)
    notebook = json.loads((root / "book" / "chapters" / "fused.ipynb").read_text())
    assert "remove-cell" in notebook["cells"][0]["metadata"]["tags"] and "widgets" not in notebook["metadata"]
    assert list(notebook["cells"][0]["outputs"][0]["data"]) == ["text/plain"]
    assert (root / "book" / "build.md").read_text().startswith("# This build")


def test_clean_site_removes_source_maps_and_notebook_copies(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.js").write_text("var a;\n//# sourceMappingURL=a.js.map\n")
    (tmp_path / "_static" / "a.js.map").write_text("{}")
    (tmp_path / "_sources").mkdir()
    (tmp_path / "_sources" / "c.ipynb").write_text("{}")
    page = ('<head><script>const THEBE_JS_URL = "x";</script>\n<script async="async" src="_static/sphinx-thebe.js?v=1">'
            '</script>\n<script>const THEBE_JS_URL = "x";</script>\n<title>t</title></head>')
    (tmp_path / "index.html").write_text(page)
    removed = book.clean_site(tmp_path)
    assert (tmp_path / "index.html").read_text() == "<head><title>t</title></head>"
    assert sorted(p.name for p in removed) == ["a.js.map", "c.ipynb"]
    assert (tmp_path / "_static" / "a.js").read_text() == "var a;\n"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_like_a_report_page(path):
    cells = json.loads(path.read_text())["cells"]
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).strip().count("\n") == 0, \
        f"{path.name}: the first cell must hold the title alone"
    params = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "remove-cell" in tags[params], f"{path.name}: the parameters cell must be removed from the page"
    setup = next(i for i in range(params + 1, len(cells)) if cells[i]["cell_type"] == "code")
    assert all("remove-cell" in tags[i] for i in range(1, setup)), \
        f"{path.name}: nothing may be shown between the title and the set-up cell that shows the summary box"
    assert "hide-input" in tags[setup], f"{path.name}: the set-up code must be hidden behind 'show code'"
    assert all(not c.get("outputs") for c in cells), f"{path.name}: notebooks are stored without outputs"


def test_figure_style_has_no_offset_and_says_so_when_empty(capsys):
    import matplotlib.pyplot as plt

    from cxrlib import plots

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1.38630, 1.38631, 1.38632])
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    assert "e" not in "".join(t.get_text() for t in ax.get_yticklabels())
    plt.close(fig)
    assert plots.plot_image_grid([], [], "Correctly classified by every model") is None
    assert plots.plot_history(pd.DataFrame(), "Fused") is None
    assert plt.get_fignums() == []


def test_table_html_fits_the_column():
    wide_and_long = pd.DataFrame(np.zeros((12, 10)), columns=[f"c{i}" for i in range(10)])
    assert book.table_html(wide_and_long).count("<table") == 2  # split in column groups
    wide = pd.DataFrame(np.zeros((2, 10)))
    assert book.table_html(wide).count("<table") == 1 and book.table_style(wide).data.shape == (10, 2)
