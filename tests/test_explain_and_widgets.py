"""Grad-CAM through top-level and nested convolutions, activations, and the widget browser's controls."""
from __future__ import annotations

import keras
import numpy as np

from cxrlib.machinery import runs
from cxrlib.present.gradcam import NO_SPATIAL_INFORMATION
from cxrlib.present.widgets import ALL_MODELS, MisclassifiedBrowser, Selection, static_gallery
from cxrlib.science import gradcam
from cxrlib.science.models import backbones, second_cnn


def test_gradcam_on_a_top_level_convolution():
    model = second_cnn(64, 64)
    assert gradcam.gradcam_target(model)[1] is None
    heatmap, explained = gradcam.gradcam(model, np.random.default_rng(0).uniform(0, 255, (64, 64, 3)))
    assert heatmap.shape == (64, 64) and 0 <= heatmap.min() and heatmap.max() <= 1 and 0 <= explained < 4


def test_gradcam_through_a_nested_backbone():
    keras.utils.set_random_seed(0)
    base = backbones.backbone("vgg16", 32)
    model = backbones.full_model("vgg16", base, backbones.head("vgg16", base.output.shape[1:]), 32)
    name, nested = gradcam.gradcam_target(model)
    assert nested is base and name == backbones.spec("vgg16").gradcam_layer
    heatmap, _ = gradcam.gradcam(model, np.random.default_rng(1).uniform(0, 255, (32, 32, 3)), class_index=2)
    assert heatmap.shape == (32, 32) and np.isfinite(heatmap).all()


def test_activations_cover_every_convolution_and_pooling_layer():
    model = second_cnn(64, 64)
    maps = gradcam.activations(model, np.zeros((64, 64, 3)))
    assert len(maps) == 11 and list(maps.values())[0].shape == (64, 64, 32)


def predictions():
    ids = [f"{i}.png" for i in range(6)]
    labels = [0, 1, 2, 3, 1, 2]
    probs_a = np.eye(4)[[0, 0, 0, 3, 1, 1]] * 0.7 + 0.075   # wrong on 1, 2, 5
    probs_b = np.eye(4)[[1, 0, 2, 3, 0, 1]] * 0.7 + 0.075   # wrong on 0, 1, 4, 5
    return {"a": runs.predictions_frame(ids, labels, probs_a), "b": runs.predictions_frame(ids, labels, probs_b)}


def test_selection_by_model_and_classes():
    selection = Selection(predictions())
    assert list(selection.pick("a")["Image Index"]) == ["1.png", "2.png", "5.png"]
    assert list(selection.pick(ALL_MODELS)["Image Index"]) == ["1.png", "5.png"]
    assert list(selection.pick("b", true_class="Effusion")["Image Index"]) == ["1.png", "4.png"]
    assert list(selection.pick("a", predicted="No Finding")["Image Index"]) == ["1.png", "2.png"]


def test_browser_controls_drive_what_it_shows():
    images = {f"{i}.png": np.full((16, 16), 20 * i, np.uint8) for i in range(6)}
    browser = MisclassifiedBrowser(predictions(), images, heatmaps=lambda model, image_id: np.eye(16), per_page=1)
    assert browser.model.value == ALL_MODELS and browser.status.value == "image 1 of 2"
    browser.next.click()
    assert list(browser.current()["Image Index"]) == ["5.png"] and browser.status.value == "image 2 of 2"
    browser.next.click()  # stays on the last page
    assert browser.page == 1
    browser.model.value = "b"  # a new choice starts again at the first page
    assert browser.page == 0 and browser.status.value == "image 1 of 4"
    browser.true_class.value = "Infiltration"
    assert list(browser.chosen()["Image Index"]) == ["5.png"]
    browser.predicted.value = "Atelectasis"
    assert browser.status.value.startswith("no ")
    browser.predicted.value = "any"
    caption = browser.rows[0][2].value
    assert "true Infiltration" in caption and "Grad-CAM" not in caption  # the X-ray alone
    browser.gradcam.value = True
    assert "Grad-CAM of b&#x27;s prediction (Effusion)" in browser.rows[0][2].value


def test_browser_names_the_class_of_the_all_models_overlay_and_empty_maps():
    images = {f"{i}.png": np.full((16, 16), 20 * i, np.uint8) for i in range(6)}
    browser = MisclassifiedBrowser(predictions(), images, heatmaps=lambda model, image_id: np.eye(16), per_page=1)
    browser.gradcam.value = True  # all models: 1.png, true Effusion, both models said No Finding
    assert "map of No Finding" in browser.rows[0][2].value
    flat = MisclassifiedBrowser(predictions(), images, heatmaps=lambda model, image_id: np.ones((16, 16)), per_page=1)
    flat.gradcam.value = True
    assert "no Grad-CAM with spatial information" in flat.rows[0][2].value


def figure_texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts]).replace("\n", " ")


def test_gallery_names_the_class_and_says_when_a_map_has_no_spatial_information():
    images = {f"{i}.png": np.zeros((16, 16), np.uint8) for i in range(6)}
    fig = static_gallery(predictions(), images, count=1, heatmaps=lambda model, image_id: np.eye(16))
    assert "Grad-CAM of No Finding (all models' mean)" in figure_texts(fig) and len(fig.axes[0].images) == 2
    flat = static_gallery(predictions(), images, count=1, heatmaps=lambda model, image_id: np.full((16, 16), 0.5))
    assert NO_SPATIAL_INFORMATION in figure_texts(flat) and len(flat.axes[0].images) == 1


def test_static_gallery_has_a_title():
    images = {f"{i}.png": np.zeros((8, 8), np.uint8) for i in range(6)}
    fig = static_gallery(predictions(), images, count=2)
    assert "Misclassified by all models" in fig._suptitle.get_text()


def test_all_models_caption_never_predicts_the_true_class():
    selection = Selection(predictions())
    chosen = selection.pick(ALL_MODELS)
    assert len(chosen) and (chosen["pred"] != chosen["label"]).all()


def test_static_browser_twin_is_self_contained_and_small():
    from cxrlib.present.widgets import browser_data, static_browser

    images = {f"{i}.png": np.full((64, 64), 30 * i, np.uint8) for i in range(6)}
    html = static_browser(predictions(), images, heatmaps=lambda model, image_id: np.eye(64))
    assert "http" not in html and "<script" in html and len(html) < 200_000
    data = browser_data(predictions(), images, heatmaps=lambda model, image_id: np.eye(64), gradcam_limit=2)
    assert data["models"] == [ALL_MODELS, "a", "b"] and len(data["cams"]) == 2
    assert [c[0] for c in data["choices"]["a"]] == sorted(["1.png", "2.png", "5.png"])
    assert all(c[1] != c[2] for cs in data["choices"].values() for c in cs)  # every entry is a mistake
    assert set(data["probs"]["1.png"]) == {"a", "b"}
    assert data["notes"][f"{ALL_MODELS}|1.png"] == "Grad-CAM: every model's map of No Finding, averaged"


def test_static_browser_names_maps_without_spatial_information_and_draws_none():
    from cxrlib.present.widgets import browser_data

    images = {f"{i}.png": np.full((64, 64), 30 * i, np.uint8) for i in range(6)}
    data = browser_data(predictions(), images, heatmaps=lambda model, image_id: np.full((64, 64), 0.3))
    assert data["notes"] and not data["cams"]
    assert all(note.endswith(NO_SPATIAL_INFORMATION) for note in data["notes"].values())
