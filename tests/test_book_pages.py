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


def test_one_label_helper_everywhere():
    from cxrlib import analysis
    from cxrlib.transfer import BackboneRun

    run = BackboneRun("chexnet", "random", pretrained=False)
    assert run.label == book.model_label("CheXNet (DenseNet121)", False) == "CheXNet (DenseNet121) (no pretrained weights)"
    assert run.model_label("chexnet_features") == "chexnet_features (no pretrained weights)"
    recorded = ", ".join([run.label, BackboneRun("vgg16", "ImageNet", pretrained=True).label])
    assert analysis.without_weights(recorded) == {"chexnet"}
    assert analysis.display_label("CheXNet", "pretrained/chexnet_features", recorded) == "CheXNet (no pretrained weights)"
    assert analysis.display_label("VGG16", "pretrained/vgg16_features", recorded) == "VGG16"


def test_conclusions_list_every_recorded_limit():
    from cxrlib import conclusions

    infos = {"scratch": {"settings": PROFILES["smoke"], "data": "real NIH sample at x (422 single-label images)",
                         "weights": "not used by this chapter"},
             "pretrained": {"settings": PROFILES["smoke"], "data": "real NIH sample at x (422 single-label images)",
                            "weights": "VGG16 (no pretrained weights)"}}
    limits = conclusions.recorded_limits(infos)
    assert limits == ["2 epochs (report: up to 30)", "24 training images per class", "87 px images (report: 227)",
                      "the 422-image real sample", "32 px backbone inputs (report: 224)", "no pretrained weights"]

    class Source:
        synthetic, kind = False, "dataset"

        def describe(self):
            return "a test source"

    ours = pd.DataFrame({"Accuracy": [0.5], "F1-macro": [0.4], "ROC AUC": [0.6]}, index=["fused/fused"])
    scores = pd.Series({"fused/fused": 0.3})
    text = conclusions.closing_statement(ours, Source(), 8, "smoke", scores, limits)
    assert all(f"- {factor}" in text for factor in limits)
    assert "records no setting below" in conclusions.closing_statement(ours, Source(), 8, "full", scores, [])


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_conclusions_legend_stays_off_the_bars():
    import matplotlib.pyplot as plt

    from cxrlib import conclusions

    ours = pd.DataFrame({"Accuracy": [0.95], "F1-macro": [0.95], "ROC AUC": [0.99]}, index=["a/b (no pretrained weights)"])
    fig = conclusions.plot_best_vs_report(ours, pd.Series({"a/b (no pretrained weights)": 0.9}))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(boxes_overlap(legend, bar.get_window_extent(renderer)) for bar in ax.patches)
    plt.close(fig)


def test_history_title_legend_and_panels_do_not_overlap():
    import matplotlib.pyplot as plt

    from cxrlib import plots

    history = pd.DataFrame({"epoch": [0], "loss": [1.3863], "accuracy": [0.25], "val_loss": [1.38631], "val_accuracy": [0.3]})
    fig = plots.plot_history(history, "CheXNet (DenseNet121) (no pretrained weights): "
                                      "chexnet_finetune_conv5_block15_0_bn (no pretrained weights)")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    figure = fig.bbox
    assert figure.x0 <= title.x0 and title.x1 <= figure.x1, "the title runs off the figure"
    for ax in fig.axes:
        panel = ax.get_tightbbox(renderer)
        assert not boxes_overlap(title, panel) and not boxes_overlap(legend, panel)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]  # whole epochs only
    plt.close(fig)


def test_resizer_change_is_measured_not_claimed():
    from cxrlib import explain

    ramp = [np.tile(np.linspace(0, 1, 16), (16, 1))]
    same = explain.resizer_change(ramp, ramp)
    assert "by 0.000 on average" in same and "about the same" in same and "1.00 times" in same
    steeper = explain.resizer_change(ramp, [2 * ramp[0]])
    assert "by 0.500 on average" in steeper and "stronger" in steeper and "2.00 times" in steeper


def test_empty_gallery_is_a_sentence_not_a_figure(monkeypatch):
    import matplotlib.pyplot as plt

    from cxrlib import plots, runs
    from cxrlib.widgets import static_gallery

    said = []
    monkeypatch.setattr(plots, "say_empty", said.append)
    ids, labels = ["1.png", "2.png"], np.array([0, 1])
    right = runs.predictions_frame(ids, labels, np.eye(4)[labels] * 0.9 + 0.025)
    images = {i: np.zeros((8, 8), np.uint8) for i in ids}
    assert static_gallery({"a": right}, images) is None  # nothing misclassified
    assert plt.get_fignums() == []
    assert said and said[0].startswith("No test image is misclassified by all models")


def test_titles_break_without_splitting_the_tag():
    from cxrlib import plots

    assert plots.short_lines("CheXNet (DenseNet121) (no pretrained weights)") == "CheXNet (DenseNet121)\n(no pretrained weights)"
    assert plots.short_lines("Fused") == "Fused"
    assert plots.wrapped("a " * 50, 20).count("\n") == 4 and plots.wrapped("short") == "short"


def test_long_identifiers_in_tables_may_wrap():
    assert book.breakable("0.250") == "0.250" and book.breakable("fused_grid/base") == "fused_grid/base"
    assert book.breakable("pretrained/vgg16_finetune_block5_conv1 0.1") == \
        "pretrained/\u200bvgg16_\u200bfinetune_\u200bblock5_\u200bconv1 0.1"


@pytest.mark.parametrize("draw", ["metric_bars", "grouped_bars"])
def test_bar_legends_stay_off_the_bars(draw):
    import matplotlib.pyplot as plt

    from cxrlib import plots

    table = pd.DataFrame({"Accuracy": [0.99, 0.5], "F1-macro": [0.98, 0.4], "ROC AUC": [0.97, 0.6]},
                         index=["VGG16 (no pretrained weights)", "Fused"])
    fig = (plots.plot_metric_bars(table, list(table), "Models") if draw == "metric_bars"
           else plots.plot_grouped_bars(table, "Models", "score"))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(boxes_overlap(legend, bar.get_window_extent(renderer)) for bar in ax.patches)
    assert "VGG16\n(no pretrained weights)" in [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)
