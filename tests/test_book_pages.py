"""The book's page parts without a browser: table style, labels that travel, the build page, the steps
around jupyter-book, the notebooks' structure, and the figure style."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from cxrlib.core.manifest import PROFILES
from cxrlib.machinery import site as book
from cxrlib.present import labels as label_words, tables

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("value, text", [(2560.0, "2,560"), (math.nan, "–"), (None, "–"), (0.25, "0.250"),
                                         (1.0, "1.000"), (np.int64(12), "12"), (0.4, "0.400"), ("VGG16", "VGG16")])
def test_cell_text_known_answers(value, text):
    assert tables.cell_text(value) == text


def test_table_style_keeps_whole_columns_whole_and_turns_wide_tables():
    frame = pd.DataFrame({"units": [2560.0, 512.0], "accuracy": [1.0, 0.25], "auc": [math.nan, 0.4]}, index=["a", "b"])
    shown = tables.table_style(frame).data
    assert shown.loc["a"].tolist() == ["2,560", "1.000", "–"] and shown.loc["b"].tolist() == ["512", "0.250", "0.400"]
    wide = pd.DataFrame(np.full((2, 12), 0.5), columns=[f"m{i}" for i in range(12)], index=["ours", "report"])
    assert tables.table_style(wide).data.shape == (12, 2)  # a few named rows: turned on its side
    numbered = pd.DataFrame(np.full((2, 12), 0.5))  # rows 0 and 1 would become headers "0" and "1": never turned
    assert tables.table_style(numbered).data.shape == (2, 12) and tables.table_html(numbered).count("<table") == 2
    assert [c.shape[1] for c in tables.table_chunks(wide, 5)] == [4, 4, 4]  # near equal groups, no lone column


def test_limiting_factors_list_what_the_run_records():
    smoke = label_words.limiting_factors(PROFILES["smoke"], {"kind": "sample", "images": 422},
                                  {"vgg16": {"pretrained": False}})
    assert smoke == [f"{PROFILES['smoke']['epochs']} epoch{'s' * (PROFILES['smoke']['epochs'] != 1)} (report: up to 30)",
                      "16 training images per class", "57 px images (report: 227)",
                     "32 px backbone inputs (report: 224)", "no pretrained weights", "the 422-image real sample"]
    assert label_words.limiting_factors({**PROFILES["full"], "allow_random_weights": False}, {"kind": "nih", "images": 9},
                                 {"vgg16": {"pretrained": True}}) == []
    assert "synthetic images" in label_words.limiting_factors({}, {"kind": "synthetic", "images": 9})


def test_profile_in_words_and_model_label():
    assert label_words.profile_in_words("smoke", PROFILES["smoke"]) == (
        f"smoke build: {PROFILES['smoke']['epochs']} epoch{'s' * (PROFILES['smoke']['epochs'] != 1)}, 16 training images "
        "per class; for checking the machinery, not for reading the numbers")
    cpu = PROFILES["cpu"]
    assert f"at {cpu['backbone_size']} px on" in label_words.profile_in_words("cpu", cpu, "pretrained")
    assert f"at {cpu['resize_to']} px on" in label_words.profile_in_words("cpu", cpu, "fused")
    moved = {**cpu, "backbone_size": 48, "resize_to": 70}  # the words follow the settings
    assert "at 70 px (backbones 48 px) on" in label_words.profile_in_words("cpu", moved, "ensemble")
    assert label_words.model_label("VGG16", pretrained=False) == "VGG16 (no pretrained weights)"
    assert label_words.model_label("VGG16 (no pretrained weights)", pretrained=False) == "VGG16 (no pretrained weights)"
    assert label_words.model_label("VGG16", pretrained=True) == "VGG16"


def test_summary_box_says_what_the_numbers_are_worth():
    box = label_words.summary_box(profile="smoke", settings=PROFILES["smoke"], data="real sample <x>", counts="160 images",
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
                           "outputs": []}],
                "metadata": {"papermill": {"parameters": {"PROFILE": "smoke"}}}}
    (chapters / "fused.ipynb").write_text(json.dumps(notebook))
    for chapter, rows, weights in (("fused", {"fused": 0.4, "base": 0.3}, None),
                                   ("pretrained", {"vgg16": 0.5}, {"vgg16": {"pretrained": False}})):
        folder = runs / "smoke" / chapter
        (folder / "metrics").mkdir(parents=True)
        info = {"settings": PROFILES["smoke"], "data": "real NIH sample (422 images)", "commit": "abc123",
                "source": {"kind": "sample", "images": 422}}
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
    assert "**smoke build: 1 epoch, 16 training images per class" in text and "2026-01-02" in text
    assert "`abc123`" in text and "tensorflow" in text
    assert "No headline yet: run `.venv/bin/cxr run conclusions`." in text  # never a best picked by the build page itself
    assert "| fused | 20 |" in text and "| pretrained | 61 |" in text
    assert "- **Why these settings:**\n  - every code path in seconds: 64 px images, epochs capped at 1" in text


def test_build_page_names_the_validation_choice_where_validation_and_test_disagree(tmp_path):
    """The conclusions choose each family's best on validation; the build page shows that table, never its own."""
    import numpy as np

    from cxrlib.core.frames import predictions_frame
    from cxrlib.machinery import analysis
    from cxrlib.present.conclusions import family_table
    from cxrlib.science.choice import validation_scores
    from cxrlib.science.stats import Bootstrap

    root, runs = fake_book(tmp_path)
    y = np.arange(40) % 4
    right, wrong = np.eye(4)[y] * 0.9 + 0.025, np.eye(4)[(y + 1) % 4] * 0.9 + 0.025
    val = {"fused/good_on_val": predictions_frame(range(40), y, right),
           "fused/good_on_test": predictions_frame(range(40), y, wrong)}
    test = {"fused/good_on_val": wrong, "fused/good_on_test": right}
    families = {key: "fused network" for key in test}
    table = family_table(Bootstrap(y, np.arange(40), n=50), test, validation_scores(val), families)
    folder = runs / "smoke" / "conclusions" / "tables"
    folder.mkdir(parents=True)
    table.to_csv(folder / analysis.FAMILIES_FILE)
    text = book.build_page(root, runs, today="2026-01-02")
    assert "| fused network | fused/good_on_val | 1.000 | 0.000 (0.000–0.000) |" in text
    assert "good_on_test" not in text


def test_weights_read_short_without_local_paths(tmp_path, monkeypatch):
    from cxrlib.machinery import weights as weight_files
    from cxrlib.machinery.transfer import weights_fields

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = weight_files.keras_cache_file("resnet152")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    chexnet = tmp_path / "w" / "chexnet.h5"
    chexnet.parent.mkdir()
    chexnet.write_bytes(b"placeholder")
    planned = {name: weights_fields(name, weight_files.planned_weights(name, chexnet_file))
               for name, chexnet_file in (("vgg16", None), ("resnet152", None), ("chexnet", chexnet))}
    assert str(tmp_path) in planned["vgg16"]["long"] and "place " in planned["vgg16"]["long"]  # the log says where
    short = label_words.weights_text(planned)
    assert short == ("VGG16: no pretrained weights (ImageNet file not found, offline); ResNet152: ImageNet (Keras's "
                     "cache); CheXNet (DenseNet121): CheXNet (chexnet.h5)")
    box = label_words.summary_box(profile="smoke", settings=PROFILES["smoke"], data="d", counts="c", weights=short,
                                  changed={}, commit="abc")
    assert str(tmp_path) not in box and "place " not in box and box.count("no pretrained weights") == 1
    assert label_words.weights_text({}) == "not used by this chapter"
    assert label_words.weights_text(planned, inherited=True).startswith("the pretrained chapter's models used: VGG16")


def code_cell(tags, outputs=(), source="x = 1"):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": list(outputs)}


def test_cells_that_show_nothing_are_removed_and_no_other_tag_changes(tmp_path):
    shown = {"output_type": "display_data", "data": {"text/plain": "table"}}
    stderr = {"output_type": "stream", "name": "stderr", "text": "W0000 tensorflow chatter"}
    cells = [code_cell(["injected-parameters"], []), code_cell(["hide-input"], []), code_cell(["hide-input"], [stderr]),
             code_cell(["show-code"], [shown]), code_cell(["hide-input"], [shown]), code_cell(["remove-cell"])]
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}}))
    assert book.remove_empty_cells(path)
    tags = [c["metadata"]["tags"] for c in json.loads(path.read_text())["cells"]]
    assert tags == [["injected-parameters", "remove-cell"], ["hide-input", "remove-cell"], ["hide-input", "remove-cell"],
                    ["show-code"], ["hide-input"], ["remove-cell"]]
    assert not book.remove_empty_cells(path)  # a second pass changes nothing


def test_the_configuration_keeps_widget_views_and_thebe_off_the_pages():
    from jupyter_book.config import get_final_config
    from myst_nb.core.render import get_mime_priority

    config, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                 sourcedir=ROOT, raise_on_invalid=True)
    assert "sphinx_thebe" not in config["extensions"] and "myst_nb" in config["extensions"]
    priority = get_mime_priority("html", config["nb_mime_priority_overrides"])
    assert "application/vnd.jupyter.widget-view+json" not in priority and "text/plain" in priority
    assert config["nb_ipywidgets_js"] == {} and config["html_copy_source"] is False


def test_every_figure_gets_its_title_as_alt_text(tmp_path):
    import base64
    import hashlib

    png = b"\x89PNG fake bytes"
    digest = hashlib.sha256(png).hexdigest()
    cells = [code_cell(["hide-input"], [{"output_type": "display_data", "data": {
        "image/png": base64.b64encode(png).decode(), "text/plain": "Figure: Fused network; panels: loss, accuracy"}}])]
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}}))
    alts = book.figure_alts(path)
    assert alts == {f"{digest}.png": "Figure: Fused network; panels: loss, accuracy"}
    page = (f'<h1>Fused</h1><h2>Training</h2><img alt="../../_images/{digest}.png" src="../../_images/{digest}.png" />'
            '<h2>Results</h2><img src="../../_images/other.png" /><img alt="A chest X-ray" src="x.jpeg" />')
    fixed = book.with_alt_texts(page, alts)
    assert f'<img alt="Figure: Fused network; panels: loss, accuracy" src="../../_images/{digest}.png" />' in fixed
    assert '<img alt="Figure in the section Results" src="../../_images/other.png" />' in fixed
    assert '<img alt="A chest X-ray" src="x.jpeg" />' in fixed


def test_figure_text_is_its_title_and_panels():
    import matplotlib.pyplot as plt

    from cxrlib.present import plots

    fig = plots.plot_history(pd.DataFrame({"epoch": [0, 1], "loss": [1.3, 1.2], "accuracy": [0.2, 0.3]}), "Fused network")
    assert plots.figure_alt(fig) == "Figure: Fused network; panels: loss, accuracy"
    plt.close(fig)


def test_every_column_keeps_one_number_format():
    frame = pd.DataFrame({"layers": [1, 2], "dropout": [0.23847, 0.1], "units": [2560, 1024],
                          "learning_rate": [1e-4, 1e-3]}, index=["report", "ours"])
    shown = tables.table_style(frame).data
    assert shown["layers"].tolist() == ["1", "2"] and shown["units"].tolist() == ["2,560", "1,024"]
    assert shown["learning_rate"].tolist() == ["1.0e-04", "1.0e-03"] and shown["dropout"].tolist() == ["0.238", "0.100"]


def test_which_classes_a_model_predicts_stays_beside_its_row_in_every_part():
    from cxrlib.present.labels import PREDICTED, metrics_row
    from cxrlib.science.metrics import F1_COLUMNS, GLOBAL_COLUMNS

    never = metrics_row("never No Finding", [0, 1, 2, 3], np.eye(4)[[1, 1, 2, 3]])
    single = metrics_row("one class", [0, 1, 2, 3], np.eye(4)[[1, 1, 1, 1]])
    assert never.loc["never No Finding", PREDICTED] == "3: never No Finding"
    assert never.loc["never No Finding", "FNFR"] == 0.0  # the number that looks perfect, and why it is not
    assert single.loc["one class", PREDICTED] == "only Effusion"
    table = pd.concat([never, single, metrics_row("all", [0, 1, 2, 3], np.eye(4)[[0, 1, 2, 3]])])
    assert table.loc["all", PREDICTED] == "all 4"
    parts = tables.table_chunks(table[[*GLOBAL_COLUMNS, *F1_COLUMNS, PREDICTED]])
    assert len(parts) == 2 and all(part.columns[-1] == PREDICTED for part in parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_metrics_table_of_a_notebook_says_which_classes_each_model_predicts(path):
    """A notebook that picks the metrics columns (GLOBAL_COLUMNS or F1_COLUMNS) for a table picks PREDICTED too."""
    import re

    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        for selection in re.findall(r"\[\[?[^\[\]]*(?:GLOBAL_COLUMNS|F1_COLUMNS)[^\[\]]*\]?\]", source):
            if "import" in selection or "for c in" in selection:
                continue
            assert "PREDICTED" in selection or "PREDICTED" in source.split(selection, 1)[1][:40], \
                f"{path.name}: {selection} shows metrics without saying which classes each model predicts"


def test_table_headers_never_break_inside_a_word_in_the_css():
    css = (ROOT / "_static" / "cxr.css").read_text()
    rules = re.findall(r"([^{}]*)\{([^}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.S))
    for selector, body in rules:
        if "th" in re.split(r"[\s,.>:]+", selector):
            assert "anywhere" not in body and "break-all" not in body, f"{selector.strip()}: {body.strip()}"


def test_every_page_links_a_favicon_that_exists():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert (ROOT / config["html"]["favicon"]).is_file()


def test_prepare_pages_removes_the_injected_parameters(tmp_path):
    root, runs = fake_book(tmp_path)
    book.prepare_pages(root, runs)
    notebook = json.loads((root / "book" / "chapters" / "fused.ipynb").read_text())
    assert notebook["cells"][0]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert (root / "book" / "build.md").read_text().startswith("# This build")


def test_clean_site_removes_source_maps_and_their_links(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.js").write_text("var a;\n//# sourceMappingURL=a.js.map\n")
    (tmp_path / "_static" / "a.js.map").write_text("{}")
    (tmp_path / "index.html").write_text("<head><title>t</title></head>")
    removed = book.clean_site(tmp_path)
    assert (tmp_path / "index.html").read_text() == "<head><title>t</title></head>"
    assert sorted(p.name for p in removed) == ["a.js.map"]
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
    shown = [i for i, (c, t) in enumerate(zip(cells, tags)) if c["cell_type"] == "code"
             and not {"hide-input", "remove-input", "remove-cell", "hide-cell", book.SHOW_CODE} & set(t)]
    assert not shown, f"{path.name}: code cells {shown} would show their code; hide them or tag them {book.SHOW_CODE}"
    assert all(not c.get("outputs") for c in cells), f"{path.name}: notebooks are stored without outputs"


def test_figure_style_has_no_offset_and_says_so_when_empty(capsys):
    import matplotlib.pyplot as plt

    from cxrlib.present import plots

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
    assert tables.table_html(wide_and_long).count("<table") == 2  # split in column groups
    wide = pd.DataFrame(np.zeros((2, 10)), index=["VGG16", "Fused"])
    assert tables.table_html(wide).count("<table") == 1 and tables.table_style(wide).data.shape == (10, 2)
    eight = pd.DataFrame(np.zeros((8, 10)), index=[f"model {i}" for i in range(8)])  # the report's final table
    assert [part.shape[1] for part in tables.table_chunks(eight)] == [5, 5]


def test_one_label_helper_everywhere():
    from cxrlib.machinery import analysis
    from cxrlib.machinery.transfer import BackboneRun
    from cxrlib.machinery.weights import Weights

    run = BackboneRun("chexnet", Weights(False, "random", "random"))
    assert run.label == label_words.model_label("CheXNet (DenseNet121)", False) == "CheXNet (DenseNet121) (no pretrained weights)"
    assert run.model_label("chexnet_features") == "chexnet_features (no pretrained weights)"
    recorded = {"chexnet": {"pretrained": False}, "vgg16": {"pretrained": True}}  # chapter.json's fields
    assert analysis.without_weights(recorded) == {"chexnet"}
    assert analysis.display_label("CheXNet", "pretrained/chexnet_features", recorded) == "CheXNet (no pretrained weights)"
    assert analysis.display_label("VGG16", "pretrained/vgg16_features", recorded) == "VGG16"


def test_conclusions_list_every_recorded_limit():
    from cxrlib.machinery import analysis

    infos = {"scratch": {"settings": PROFILES["smoke"], "data": "real NIH sample at x (422 single-label images)",
                         "source": {"kind": "sample", "images": 422},
                         "weights": {}},
             "pretrained": {"settings": PROFILES["smoke"], "data": "real NIH sample at x (422 single-label images)",
                            "source": {"kind": "sample", "images": 422},
                            "weights": {"vgg16": {"pretrained": False}}}}
    limits = analysis.recorded_limits(infos)
    assert limits == [f"{PROFILES['smoke']['epochs']} epoch{'s' * (PROFILES['smoke']['epochs'] != 1)} (report: up to 30)",
                      "16 training images per class", "57 px images (report: 227)",
                      "the 422-image real sample", "32 px backbone inputs (report: 224)", "no pretrained weights"]


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_forest_legend_stays_off_the_intervals():
    import matplotlib.pyplot as plt

    from cxrlib.present.figures import plot_forest
    from cxrlib.science.stats import Interval

    fig = plot_forest({"a/b (no pretrained weights)": Interval(0.95, 0.9, 0.99), "c": Interval(0.5, 0.4, 0.6)},
                      "title", reference={"the report's best": 0.7275})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not boxes_overlap(legend, ax.get_window_extent(renderer))
    plt.close(fig)


def test_history_title_legend_and_panels_do_not_overlap():
    import matplotlib.pyplot as plt

    from cxrlib.present import plots

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
    from cxrlib.present import gradcam as cam_figures

    ramp = [np.tile(np.linspace(0, 1, 16), (16, 1))]
    same = cam_figures.resizer_change(ramp, ramp)
    assert "by 0.000 on average" in same and "about the same" in same and "1.00 times" in same
    steeper = cam_figures.resizer_change(ramp, [2 * ramp[0]])
    assert "by 0.500 on average" in steeper and "stronger" in steeper and "2.00 times" in steeper


def test_empty_gallery_is_a_sentence_not_a_figure(monkeypatch):
    import matplotlib.pyplot as plt

    from cxrlib.present import plots
    from cxrlib.machinery import runs
    from cxrlib.present.widgets import static_gallery

    said = []
    monkeypatch.setattr(plots, "say_empty", said.append)
    ids, labels = ["1.png", "2.png"], np.array([0, 1])
    right = runs.predictions_frame(ids, labels, np.eye(4)[labels] * 0.9 + 0.025)
    images = {i: np.zeros((8, 8), np.uint8) for i in ids}
    assert static_gallery({"a": right}, images) is None  # nothing misclassified
    assert plt.get_fignums() == []
    assert said and said[0].startswith("No test image is misclassified by all models")


def test_titles_break_without_splitting_the_tag():
    from cxrlib.present import plots

    assert plots.short_lines("CheXNet (DenseNet121) (no pretrained weights)") == "CheXNet (DenseNet121)\n(no pretrained weights)"
    assert plots.short_lines("Fused") == "Fused"
    assert plots.wrapped("a " * 50, 20).count("\n") == 4 and plots.wrapped("short") == "short"


def test_long_identifiers_in_tables_may_wrap():
    assert tables.breakable("0.250") == "0.250" and tables.breakable("fused_grid/base") == "fused_grid/base"
    assert tables.breakable("pretrained/vgg16_finetune_block5_conv1 0.1") == \
        "pretrained/\u200bvgg16_\u200bfinetune_\u200bblock5_\u200bconv1 0.1"


def test_bar_legends_stay_off_the_bars():
    import matplotlib.pyplot as plt

    from cxrlib.present import plots

    table = pd.DataFrame({"Accuracy": [0.99, 0.5], "F1-macro": [0.98, 0.4], "ROC AUC": [0.97, 0.6]},
                         index=["VGG16 (no pretrained weights)", "Fused"])
    fig = plots.plot_grouped_bars(table, "Models", "score")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(boxes_overlap(legend, bar.get_window_extent(renderer)) for bar in ax.patches)
    assert "VGG16\n(no pretrained weights)" in [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)


def test_training_says_in_words_when_the_learning_rate_falls(tmp_path, capsys):
    import keras

    from cxrlib.science import training

    plateau = training.report_callbacks(tmp_path, "val_loss", patience=5, min_lr=1e-7)[0]
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau) and plateau.verbose == 0  # no raw Keras line
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    line = training.EpochLine("fused", epochs=3)
    line.set_model(model)
    line.on_train_begin()
    line.on_epoch_end(0, {"loss": 1.0})
    model.optimizer.learning_rate = 8e-4
    line.on_epoch_end(1, {"loss": 1.0})
    printed = capsys.readouterr().out
    assert "[fused] learning rate lowered from 0.001 to 0.0008 (no recent improvement)" in printed
    assert printed.count("learning rate lowered") == 1 and "ReduceLROnPlateau" not in printed
