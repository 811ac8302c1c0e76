"""The book's figures read as a careful reader needs them to, checked on the drawn figures (no book build):
legends never over the data, loss axes never scaled below a run's noise, a one-epoch history drawn as points
with a note, Grad-CAM with a colour bar and a box in a colour the heatmap never uses, reliability diagrams
with room for their curves, and gallery captions that claim no more agreement between models than the data
hold."""
from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def is_colourbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


def data_boxes(fig, renderer) -> list:
    """The window extent of everything that draws data: lines' points, bars, markers (not the axes' frames)."""
    boxes = []
    for ax in fig.axes:
        if is_colourbar(ax):
            continue
        for line in ax.lines:
            xy = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
            boxes += [matplotlib.transforms.Bbox.from_extents(x - 2, y - 2, x + 2, y + 2) for x, y in xy
                      if np.isfinite([x, y]).all()]
        boxes += [patch.get_window_extent(renderer) for patch in ax.patches]
        for collection in ax.collections:
            offsets = collection.get_offsets()
            if len(offsets):
                xy = ax.transData.transform(np.asarray(offsets, float))
                boxes += [matplotlib.transforms.Bbox.from_extents(x - 3, y - 3, x + 3, y + 3) for x, y in xy]
    return boxes


def legends_clear_of_data(fig) -> list:
    """Every legend (of the figure or of an axes) that covers a data point, a bar or a marker."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    data = data_boxes(fig, renderer)
    return [legend for legend in legends if any(overlaps(legend.get_window_extent(renderer), box) for box in data)]


def decimals(ax) -> int:
    """The most decimals of any y tick label inside the axis' range."""
    low, high = ax.get_ylim()
    labels = [t.get_text().replace("−", "-") for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]
    return max((len(text.split(".")[1]) if "." in text else 0) for text in labels if text)


def history(epochs: int, loss: float = 1.3863, wobble: float = 4e-5) -> pd.DataFrame:
    """A training history whose loss barely moves (a smoke run), wobble apart epoch to epoch."""
    steps = np.arange(epochs)
    return pd.DataFrame({"epoch": steps, "loss": loss + wobble * (steps % 2), "accuracy": 0.25 + 0.01 * steps,
                         "val_loss": loss + wobble * ((steps + 1) % 2), "val_accuracy": 0.3 + 0 * steps})


# ---------------------------------------------------------------- training curves

def test_a_flat_loss_is_not_blown_up_into_a_curve():
    from cxrlib.present import plots

    fig = plots.plot_history(history(3), "Fused network")
    loss = fig.axes[0]
    low, high = loss.get_ylim()
    assert high - low >= plots.noise_span([1.3863]) >= plots.LOSS_SPAN
    assert decimals(loss) <= 2, [t.get_text() for t in loss.get_yticklabels()]
    assert fig.axes[1].get_ylim() == (0, 1)  # accuracy on its whole scale
    assert not legends_clear_of_data(fig)


def test_a_real_loss_curve_keeps_its_shape():
    from cxrlib.present import plots

    falling = pd.DataFrame({"epoch": range(6), "loss": [1.4, 1.1, 0.9, 0.8, 0.7, 0.65],
                            "val_loss": [1.35, 1.2, 1.0, 0.95, 0.97, 0.99]})
    ax = plots.plot_history(falling, "Fused").axes[0]
    low, high = ax.get_ylim()
    assert low <= 0.65 and high >= 1.4 and high - low < 1.2  # around the data, not from zero to a fixed top


def test_histories_of_several_models_keep_to_the_noise_floor_and_mark_single_epochs():
    from cxrlib.present import plots

    fig = plots.plot_histories({"base": history(3), "one epoch": history(1)}, title="Validation loss")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert high - low >= plots.LOSS_SPAN and decimals(ax) <= 2
    single = [line for line in ax.lines if line.get_label() == "one epoch"][0]
    assert single.get_linestyle() == "None" and single.get_marker() == "o"
    assert any(plots.ONE_EPOCH_NOTE in text.get_text() and "one epoch" in text.get_text() for text in fig.texts)
    assert not legends_clear_of_data(fig)


def test_a_one_epoch_history_is_drawn_as_points_with_a_note():
    from cxrlib.present import plots

    fig = plots.plot_history(history(1), "CheXNet (no pretrained weights)")
    for ax in fig.axes:
        assert ax.lines and all(line.get_linestyle() == "None" and line.get_marker() in "os" for line in ax.lines)
    notes = [text for text in fig.texts if text.get_text() == plots.ONE_EPOCH_NOTE]
    assert len(notes) == 1
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    note = notes[0].get_window_extent(renderer)
    assert not any(overlaps(note, box) for box in [fig.legends[0].get_window_extent(renderer),
                                                     *(ax.get_tightbbox(renderer) for ax in fig.axes)])
    assert not legends_clear_of_data(fig)


def test_a_genetic_algorithm_history_is_not_scaled_below_one_image():
    from cxrlib.present import figures, plots

    class Restart:
        def __init__(self, seed, values):
            self.seed, self.history = seed, values

    fig = figures.plot_ga_history([Restart(42, [0.21, 0.2275, 0.2275]), Restart(43, [0.21, 0.21, 0.2275])])
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert high - low >= plots.SCORE_SPAN and decimals(ax) <= 2
    assert not legends_clear_of_data(fig)


# ---------------------------------------------------------------- calibration

def test_reliability_diagrams_give_every_model_room_and_keep_the_legend_off_the_data():
    from cxrlib.present import figures
    from cxrlib.science import calibration

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    curves = {f"Weighted average voting (differential evolution) (no pretrained weights) {i}":
              rng.dirichlet(np.ones(4) * (i + 1), 60) for i in range(8)}
    fig = figures.plot_reliability(curves, labels, "Reliability on the test set")
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(panels) == 8
    assert all(ax.get_window_extent().width >= 150 and ax.get_window_extent().height >= 120 for ax in panels), \
        "a panel is squeezed"
    assert all(ax.get_xlim()[0] >= 0.2 for ax in panels)  # the top class's confidence never falls below 1/4
    assert not legends_clear_of_data(fig)


def test_a_temperature_at_the_end_of_its_search_reads_as_such():
    from cxrlib.present.labels import temperature_text
    from cxrlib.science import calibration

    labels = np.arange(40) % 4
    wrong = 10 * np.eye(4)[(labels + 1) % 4]
    text = temperature_text(*calibration.fit_temperature(labels, wrong))
    assert text.startswith("≥ 100") and "not a fit" in text and not re.search(r"\d\.\d{3}", text)


# ---------------------------------------------------------------- Grad-CAM

def test_gradcam_uses_a_colour_bar_and_a_box_colour_the_heatmap_never_has():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from cxrlib.present import gradcam as cam_figures

    fig, ax = plt.subplots()
    cam_figures.overlay(ax, np.zeros((16, 16)), np.eye(16), "Effusion", box=(2, 2, 6, 6))
    assert ax.images[1].get_cmap().name == cam_figures.CAM_CMAP != "jet"
    box = to_rgb(ax.patches[0].get_edgecolor())
    colours = matplotlib.colormaps[cam_figures.CAM_CMAP](np.linspace(0, 1, 256))[:, :3]
    assert np.min(np.linalg.norm(colours - box, axis=1)) > 0.5, "the box's colour is one the heatmap uses"
    bar = cam_figures.cam_colourbar(fig)
    assert bar.cmap.name == cam_figures.CAM_CMAP and "Grad-CAM" in bar.ax.get_xlabel()


def test_the_gradcam_grid_has_a_colour_bar_clear_of_its_panels():
    from tests.test_gradcam import SIZE, blob_model

    from cxrlib.present import gradcam as cam_figures

    images = {"a.png": np.zeros((SIZE, SIZE), np.uint8)}
    fig = cam_figures.gradcam_grid({"VGG16": blob_model()}, {"Effusion": "a.png"},
                               lambda ids, size: {i: images[i] for i in ids}, size=SIZE)
    bars = [ax for ax in fig.axes if is_colourbar(ax)]
    assert len(bars) == 1 and cam_figures.BOX_COLOUR in fig._suptitle.get_text()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bar = bars[0].get_tightbbox(renderer)
    assert not any(overlaps(bar, ax.get_tightbbox(renderer)) for ax in fig.axes if ax is not bars[0])


# ---------------------------------------------------------------- the gallery's captions

def disagreeing_predictions():
    """Three models that all miss image a.png (an Effusion) but predict different classes, and agree on b.png."""
    from cxrlib.machinery import runs

    ids, labels = ["a.png", "b.png"], np.array([1, 2])
    probs = {"m1": [[0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]],
             "m2": [[0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1]],
             "m3": [[0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]]}
    return {name: runs.predictions_frame(ids, labels, np.array(p)) for name, p in probs.items()}


def test_gallery_captions_claim_only_the_agreement_the_data_hold():
    from cxrlib.present import plots
    from cxrlib.present.widgets import Selection, browser_data, static_gallery
    from tests.test_browser import CLAIM, claim_problems

    predictions = disagreeing_predictions()
    images = {i: np.zeros((8, 8), np.uint8) for i in ("a.png", "b.png")}
    fig = static_gallery(predictions, images, count=2)
    text = plots.figure_alt(fig)  # what the page's alt text carries: every panel's caption
    data = browser_data(predictions, images)
    claims = [m.group(0) for m in CLAIM.finditer(text)]
    assert claims == ["a.png true Effusion predicted Atelectasis by 2 of 3 models",
                      "b.png true Infiltration predicted No Finding by all 3 models"]
    assert claim_problems(text, data) == []
    # the same check fails the caption this project once printed
    assert claim_problems("a.png true Effusion predicted Atelectasis by all models", data)
    assert claim_problems("a.png true Effusion predicted Atelectasis by all 3 models", data)
    selection = Selection(predictions)
    assert [c[3] for c in data["choices"]["all models"]] == [selection.agreement("a.png", 3), 3]


def test_the_static_browser_says_it_is_interactive_and_embeds_images_at_their_size():
    import base64
    import io
    import json

    from PIL import Image

    from cxrlib.present.widgets import INTERACTIVE_NOTE, browser_data, static_browser

    predictions = disagreeing_predictions()
    images = {i: np.zeros((40, 40), np.uint8) for i in ("a.png", "b.png")}
    html = static_browser(predictions, images)
    assert INTERACTIVE_NOTE.split(":")[0] in html and 'width="224"' not in html
    data = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html, re.S).group(1))
    thumb = Image.open(io.BytesIO(base64.b64decode(data["thumbs"]["a.png"].split(",", 1)[1])))
    assert thumb.size == (40, 40)
    capped = browser_data(predictions, images, per_choice=1)
    assert capped["per_choice"] == 1 and all(t[2] >= 1 for t in capped["totals"]["all models"])
