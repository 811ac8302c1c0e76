"""Grad-CAM and box scoring against known answers: a blob that decides the class, a feature only the
fused net's shallow branches see, chance-level baselines, and the class each box is explained with."""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from cxrlib.present import gradcam as cam_figures
from cxrlib.science import boxes as box_scores
from cxrlib.science import gradcam
from cxrlib.core.backbones import BACKBONES
from cxrlib.science.models import backbones, fused_net

SIZE, BLOB = 32, 6


def blob_images(count: int, seed: int):
    """Dim noise; class 1 images carry a bright BLOB x BLOB square at a random place, its box returned."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (count, SIZE, SIZE, 1)).astype(np.float32)
    labels = np.arange(count) % 2
    boxes = []
    for image, label in zip(images, labels):
        x, y = rng.integers(0, SIZE - BLOB, 2)
        if label:
            image[y:y + BLOB, x:x + BLOB] = 255
        boxes.append((x, y, BLOB, BLOB))
    return np.repeat(images, 3, axis=-1), labels, boxes


def blob_model():
    """A small conv-GAP-dense net whose softmax saturates once trained."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="classifier")(x))


@pytest.fixture(scope="module")
def trained_blob_model():
    keras.utils.set_random_seed(0)
    model = blob_model()
    images, labels, _ = blob_images(512, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    return model


def test_gradcam_finds_the_blob_that_decides_the_class(trained_blob_model):
    images, labels, boxes = blob_images(80, seed=1)
    keep = labels == 1
    assert trained_blob_model.evaluate(images, labels, verbose=0)[1] >= 0.95  # the model did learn the rule
    heatmaps = {(f"{i}.png", "blob"): gradcam.gradcam(trained_blob_model, image, class_index=1)[0]
                for i, image in enumerate(images) if keep[i]}
    hits = [box_scores.pointing_hit(heatmaps[f"{i}.png", "blob"], boxes[i]) for i in np.flatnonzero(keep)]
    assert np.mean(hits) >= 0.9
    table = pd.DataFrame([{"Image Index": f"{i}.png", "Finding Label": "blob", "x": boxes[i][0], "y": boxes[i][1],
                           "w": BLOB, "h": BLOB} for i in np.flatnonzero(keep)])
    scores = box_scores.score_boxes(heatmaps, table, size=SIZE, original=SIZE, repeats=20)
    assert scores.loc["pointing", "Grad-CAM"] >= 0.9
    assert scores.loc["pointing", "shuffled heatmaps"] <= 0.3  # a heatmap on the wrong image rarely hits
    assert scores.loc["pointing", "random point"] <= 0.3


def test_gradcam_of_a_gap_net_is_the_class_activation_map(trained_blob_model):
    # on conv-GAP-dense, the pre-softmax Grad-CAM is Zhou et al.'s CAM: relu(maps @ the class's kernel column);
    # the softmax's gradient would subtract the other classes' columns instead
    model = trained_blob_model
    images, _, _ = blob_images(4, seed=2)
    last = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    maps = keras.Model(model.inputs, last.output)(images[:2]).numpy()
    kernel = model.get_layer("classifier").kernel.numpy()
    for image, image_maps in zip(images[:2], maps):
        for k in (0, 1):
            cam = np.maximum(image_maps @ kernel[:, k], 0)
            expected = cam / (cam.max() + 1e-8)
            heatmap, explained = gradcam.gradcam(model, image, class_index=k)
            assert explained == k
            np.testing.assert_allclose(heatmap, expected, atol=1e-3)


def positive_fused_net_blind_to_deep_maps():
    """A small fused net whose dense layers read only the shallow branches, with positive weights."""
    keras.utils.set_random_seed(0)
    model = fused_net(131, 131, resizer=False, dense_units=16)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for i, layer in enumerate(dense):
        kernel = np.abs(layer.kernel.numpy())
        if i == 0:
            kernel[352:] = 0  # the last 256 of 608 concatenated channels come from the deep branch
        layer.kernel.assign(kernel)
        layer.bias.assign(np.zeros(layer.bias.shape))
    for layer in model.layers:  # conv1 without bias: a dark background gives no response
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(np.zeros(layer.bias.shape))
    return model


def test_fused_heatmap_sees_what_only_the_shallow_branches_see():
    model = positive_fused_net_blind_to_deep_maps()
    assert gradcam.gradcam_target(model)[0].startswith("concatenate")
    for corner in ((10, 10), (85, 85)):
        image = np.zeros((131, 131, 3), np.float32)
        image[corner[1]:corner[1] + 36, corner[0]:corner[0] + 36] = 255
        heatmap, _ = gradcam.gradcam(model, image, class_index=0)
        y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert abs(x - (corner[0] + 18)) < 40 and abs(y - (corner[1] + 18)) < 40
        # the last convolution, bypassed by the classifier here, gives no heatmap at all
        assert gradcam.gradcam(model, image, 0, layer="last_conv")[0].max() == 0


def test_each_backbone_declares_its_target_layer():
    keras.utils.set_random_seed(0)
    base = backbones.backbone("vgg16", 32)
    model = backbones.full_model("vgg16", base, backbones.head("vgg16", base.output.shape[1:]), 32)
    assert gradcam.gradcam_target(model) == ("block5_conv3", base)
    assert cam_figures.target_description(model)["resolution"] == "2x2"
    assert {s.gradcam_layer for s in BACKBONES.values()} == {"block5_conv3", "conv5_block3_out", "relu"}


def centred_box(size, share):
    side = size * np.sqrt(share)
    return ((size - side) / 2, (size - side) / 2, side, side)


def test_random_baselines_point_at_chance():
    size, rng = 64, np.random.default_rng(0)
    box = (16, 16, 32, 32)  # a centred box, a quarter of the frame
    share = box[2] * box[3] / size ** 2
    assert abs(box_scores.random_point_hits(box, size, 2000, rng).mean() - share) <= 0.03
    # shuffled heatmaps whose peaks lie anywhere: their pointing score is also the box's share
    peaks = rng.integers(0, size, (2000, 2))
    heatmaps = {}
    for i, (x, y) in enumerate(peaks):
        heatmap = np.zeros((size, size))
        heatmap[y, x] = 1
        heatmaps[f"{i}.png", "Effusion"] = heatmap
    boxes = pd.DataFrame([{"Image Index": f"{i}.png", "Finding Label": "Effusion", "x": 16, "y": 16, "w": 32, "h": 32}
                          for i in range(2000)])
    scores = box_scores.score_boxes(heatmaps, boxes, size, original=size, repeats=1)
    assert abs(scores.loc["pointing", "shuffled heatmaps"] - share) <= 0.03
    assert abs(scores.loc["pointing", "random point"] - share) <= 0.03


def test_box_scoring_explains_the_class_of_the_box(monkeypatch):
    asked = []

    def spy(model, images, class_indices, layer=None):
        asked.extend(zip(images, class_indices))
        return [(np.ones((8, 8)), 0) for _ in images]

    monkeypatch.setattr(box_scores, "gradcam_cells_batch", spy)
    model = type("M", (), {"input": type("I", (), {"shape": (None, 8, 8, 3)})()})()
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion", "Atelectasis"],
                          "x": [0, 0], "y": [0, 0], "w": [512, 512], "h": [512, 512]})
    box_scores.score_models({"m": model}, boxes, images_for=lambda ids, size: {i: i for i in ids})
    assert sorted(asked) == [("a.png", 1), ("b.png", 3)]


def test_box_table_reports_the_area_of_each_method():
    heatmaps = {("a.png", "Effusion"): np.pad(np.ones((8, 8)), 28), ("b.png", "Effusion"): np.pad(np.ones((16, 16)), 24)}
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion"] * 2,
                          "x": [0, 0], "y": [0, 0], "w": [64, 64], "h": [64, 64]})
    table = box_scores.score_boxes(heatmaps, boxes, size=64, original=64)
    assert table.loc[box_scores.AREA, "Grad-CAM"] == pytest.approx((64 + 256) / 2 / 64 ** 2)
    assert table.loc[box_scores.AREA, "shuffled heatmaps"] == pytest.approx((64 + 256) / 2 / 64 ** 2)


def test_grid_titles_are_readable_and_say_no_pretrained_weights():
    model = blob_model()
    images = {"a.png": np.zeros((SIZE, SIZE), np.uint8)}
    fig = cam_figures.gradcam_grid({"VGG16 (no pretrained weights)": model}, {"Effusion": "a.png"},
                               lambda ids, size: {i: images[i] for i in ids}, size=SIZE)
    title = fig.axes[0].title
    assert "no pretrained weights" in title.get_text()
    assert cam_figures.shown_points(fig, title.get_fontsize()) >= 10


# --- coarse maps, the within-label baseline and maps without spatial information ---------------------

def coarse_map(row: int = 3, column: int = 0, cells: int = 7) -> np.ndarray:
    """A cells x cells Grad-CAM grid peaked at one cell, lower everywhere else."""
    cam = np.full((cells, cells), 0.2)
    cam[row, column] = 1.0
    return cam


def test_upsample_is_tensorflows_bilinear_resize():
    import tensorflow as tf

    for cells, size in ((7, 224), (2, 87), (3, 3), (6, 250)):
        cam = np.random.default_rng(cells).uniform(0, 1, (cells, cells)).astype(np.float32)
        expected = tf.image.resize(cam[..., None], (size, size))[..., 0].numpy()
        np.testing.assert_allclose(gradcam.upsample(cam, (size, size)), expected, atol=1e-6)


def test_pointing_on_a_coarse_map_is_the_peak_cells_centre():
    # 7x7 cells over 224 px: a cell is 32 px, so cell (row 3, column 0) is centred at x = 16, y = 112
    cam = coarse_map()
    assert box_scores.peak_point(cam, 224) == (16.0, 112.0)
    # resized first, the peak cell becomes a flat top whose first pixel sits on the image's edge
    y, x = np.unravel_index(np.argmax(gradcam.upsample(cam, (224, 224))), (224, 224))
    assert (x, y) == (0, 111)
    box = (8, 104, 16, 16)  # around the cell's centre, clear of the edge
    assert box_scores.pointing_hit(cam, box, 224)
    assert box_scores.score_heatmap(cam, box, 224)["pointing"]
    assert not box_scores.pointing_hit(gradcam.upsample(cam, (224, 224)), box, 224)  # what resizing first gave


def test_box_scoring_keeps_the_grid_for_the_point_and_resizes_for_the_box():
    scale = 1024 / 224  # the box of the coarse-map test above, in NIH's 1024-pixel frame
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion"] * 2,
                          "x": [8 * scale] * 2, "y": [104 * scale] * 2, "w": [16 * scale] * 2, "h": [16 * scale] * 2})
    table = box_scores.score_boxes({("a.png", "Effusion"): coarse_map(), ("b.png", "Effusion"): coarse_map()}, boxes,
                                   size=224)
    assert table.loc["pointing", "Grad-CAM"] == 1.0
    # the predicted box is the peak cell's region at half the maximum on the resized map: within the left column
    assert 0 < table.loc[box_scores.AREA, "Grad-CAM"] < 2 / 49


def test_pointing_tolerance_counts_near_misses_only_when_asked():
    box = (100, 100, 20, 20)
    assert not box_scores.inside(130, 110, box) and box_scores.inside(130, 110, box, tolerance=15)
    assert not box_scores.inside(140, 130, box, tolerance=15)  # 20 px right and 10 px below: 22.4 px away
    assert box_scores.inside(110, 110, box, tolerance=15)


def test_the_page_states_the_scoring_rules_from_the_constants():
    rules = cam_figures.scoring_rules()
    assert all(f"{t:g}" in rules for t in box_scores.THRESHOLDS) and "Wang et al. (2017)" in rules
    assert "15 pixels" in rules and ("no tolerance" in rules) == (box_scores.POINTING_TOLERANCE == 0)
    assert "centre of the hottest cell" in rules and "same label" in rules


def test_shuffled_baseline_shuffles_within_each_label():
    # 2 Effusion boxes covering the whole frame and 10 tiny Atelectasis boxes, each heatmap peaked on its own
    # image's box. Within each label, every shuffled Effusion map still hits (the box is the frame) and no
    # Atelectasis map lands on another image's tiny box: 2 hits of 12 boxes = 1/6 = 0.167 in every round.
    # Shuffling across labels scored only the boxes whose partner shared their label (about 2/11 Effusion and
    # 10 x 9/11 Atelectasis per round) and gave about 2 / 92 = 0.02.
    size, rows, heatmaps = 64, [], {}
    for i in range(2):
        rows.append({"Image Index": f"e{i}.png", "Finding Label": "Effusion", "x": 0, "y": 0, "w": size, "h": size})
        heatmaps[f"e{i}.png", "Effusion"] = coarse_map(i, 5, cells=8)
    for i in range(10):
        x, y = 2 + 6 * i, 30
        rows.append({"Image Index": f"a{i}.png", "Finding Label": "Atelectasis", "x": x, "y": y, "w": 2, "h": 2})
        heatmap = np.zeros((size, size))
        heatmap[y, x] = 1.0
        heatmaps[f"a{i}.png", "Atelectasis"] = heatmap
    table = box_scores.score_boxes(heatmaps, pd.DataFrame(rows), size, original=size, repeats=20)
    assert table.loc["pointing", "Grad-CAM"] == 1.0
    assert table.loc["pointing", "shuffled heatmaps"] == pytest.approx(2 / 12)
    assert round(table.loc["pointing", "shuffled heatmaps"], 3) == 0.167


def test_a_label_with_one_boxed_image_has_no_shuffled_partner():
    rng = np.random.default_rng(0)
    boxes = [{"Image Index": name, "Finding Label": label}
             for name, label in (("a.png", "Effusion"), ("b.png", "Effusion"), ("c.png", "Atelectasis"))]
    heatmaps = {(b["Image Index"], b["Finding Label"]): np.full((2, 2), i) for i, b in enumerate(boxes)}
    pairs = box_scores.shuffled_within_labels(boxes, heatmaps, rng)
    assert sorted((box["Image Index"], int(heatmap[0, 0])) for box, heatmap in pairs) == [("a.png", 1), ("b.png", 0)]


def test_maps_without_spatial_information():
    assert not gradcam.has_spatial_information(np.ones((1, 1)))
    assert not gradcam.has_spatial_information(np.zeros((8, 8)))
    assert not gradcam.has_spatial_information(gradcam.upsample(np.full((1, 1), 0.7), (87, 87)))
    assert not gradcam.has_spatial_information(np.ones((1, 5)) * np.arange(5))  # one row of cells
    assert gradcam.has_spatial_information(np.eye(2))
    rows = box_scores.score_boxes({(name, "Effusion"): np.ones((1, 1)) for name in ("a.png", "b.png")},
                                  pd.DataFrame([{"Image Index": name, "Finding Label": "Effusion", "x": 0, "y": 0,
                                                 "w": 8, "h": 8} for name in ("a.png", "b.png")]), size=16, original=16)
    assert rows.loc[box_scores.NO_INFORMATION, "Grad-CAM"] == 1.0


def one_cell_model(size: int = 16):
    """A net whose Grad-CAM target map is 1x1, as the deep backbones' at smoke size."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, size, activation="relu")(inputs)  # one cell
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="classifier")(x))


def texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts).replace("\n", " ")


def test_a_one_cell_map_is_drawn_as_no_spatial_information():
    model = one_cell_model()
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3))
    cells, _ = gradcam.gradcam_cells(model, image, class_index=0)
    assert cells.shape == (1, 1) and not gradcam.has_spatial_information(gradcam.gradcam(model, image, 0)[0])
    images = {"a.png": image[..., 0].astype(np.uint8)}
    fig = cam_figures.gradcam_grid({"ResNet152": model}, {"Effusion": "a.png"},
                               lambda ids, size: {i: images[i] for i in ids}, size=16)
    ax = fig.axes[0]
    assert len(ax.images) == 1  # the X-ray only, no uniform tint
    assert cam_figures.NO_SPATIAL_INFORMATION in texts(ax)


def test_an_informative_map_is_tinted_without_a_warning():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    cam_figures.overlay(ax, np.zeros((8, 8)), np.eye(8), "x")
    assert len(ax.images) == 2 and cam_figures.NO_SPATIAL_INFORMATION not in texts(ax)
    plt.close(fig)


def test_all_models_explain_one_class_and_skip_empty_maps(monkeypatch):
    # a predicts Effusion (1), b Atelectasis (3), c Effusion: every model's map of Effusion is averaged;
    # c's map has no spatial information and is left out of the average
    predicted = {"a": 1, "b": 3, "c": 1}
    maps = {"a": np.eye(4), "b": np.fliplr(np.eye(4)), "c": np.ones((4, 4))}
    asked = []

    def fake(model, images_for, image_id, size=None, class_index=None):
        asked.append((model, class_index))
        return maps[model], predicted[model] if class_index is None else class_index

    from cxrlib.machinery import browse

    monkeypatch.setattr(browse, "heatmap_at", fake)
    source = browse.heatmap_source({"a": "a", "b": "b", "c": "c"}, None, 4)
    heatmap = source("all models", "x.png")
    assert {k for m, k in asked if k is not None} == {1} and ("b", 1) in asked
    np.testing.assert_allclose(heatmap, (np.eye(4) + np.fliplr(np.eye(4))) / 2)
    assert source("b", "x.png") is maps["b"] and source("all models", "x.png", 3) is not None


def test_every_column_averages_over_the_same_boxes():
    """A label with one boxed image has no shuffled partner: it leaves every column, not only the baseline's."""
    size = 64
    rows = [{"Image Index": f"e{i}.png", "Finding Label": "Effusion", "x": 0, "y": 0, "w": size, "h": size}
            for i in range(2)] + [{"Image Index": "a.png", "Finding Label": "Atelectasis", "x": 0, "y": 0, "w": 2, "h": 2}]
    heatmaps = {(r["Image Index"], r["Finding Label"]): coarse_map(i, 5, cells=8) for i, r in enumerate(rows)}
    table = box_scores.score_boxes(heatmaps, pd.DataFrame(rows), size, original=size, repeats=5)
    assert (table["boxes"] == 2).all()
    assert table.loc["pointing", "Grad-CAM"] == 1.0  # the Atelectasis box, missed, is not averaged in
    assert table.loc["pointing", "Grad-CAM low"] <= 1.0 <= table.loc["pointing", "Grad-CAM high"]
