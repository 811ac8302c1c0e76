"""Grad-CAM and box scoring against known answers: a blob that decides the class, a feature only the
fused net's shallow branches see, chance-level baselines, and the class each box is explained with."""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from cxrlib import explain
from cxrlib.models import backbones, fused_net

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
    heatmaps = {(f"{i}.png", "blob"): explain.gradcam(trained_blob_model, image, class_index=1)[0]
                for i, image in enumerate(images) if keep[i]}
    hits = [explain.pointing_hit(heatmaps[f"{i}.png", "blob"], boxes[i]) for i in np.flatnonzero(keep)]
    assert np.mean(hits) >= 0.9
    table = pd.DataFrame([{"Image Index": f"{i}.png", "Finding Label": "blob", "x": boxes[i][0], "y": boxes[i][1],
                           "w": BLOB, "h": BLOB} for i in np.flatnonzero(keep)])
    scores = explain.score_boxes(heatmaps, table, size=SIZE, original=SIZE, repeats=20)
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
            heatmap, explained = explain.gradcam(model, image, class_index=k)
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
    assert explain.gradcam_target(model)[0].startswith("concatenate")
    for corner in ((10, 10), (85, 85)):
        image = np.zeros((131, 131, 3), np.float32)
        image[corner[1]:corner[1] + 36, corner[0]:corner[0] + 36] = 255
        heatmap, _ = explain.gradcam(model, image, class_index=0)
        y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert abs(x - (corner[0] + 18)) < 40 and abs(y - (corner[1] + 18)) < 40
        # the last convolution, bypassed by the classifier here, gives no heatmap at all
        assert explain.gradcam(model, image, 0, layer="last_conv")[0].max() == 0


def test_each_backbone_declares_its_target_layer():
    keras.utils.set_random_seed(0)
    base = backbones.backbone("vgg16", 32)
    model = backbones.full_model("vgg16", base, backbones.head("vgg16", base.output.shape[1:]), 32)
    assert explain.gradcam_target(model) == ("block5_conv3", base)
    assert explain.target_description(model)["resolution"] == "2x2"
    assert {s.gradcam_layer for s in backbones.BACKBONES.values()} == {"block5_conv3", "conv5_block3_out", "relu"}


def centred_box(size, share):
    side = size * np.sqrt(share)
    return ((size - side) / 2, (size - side) / 2, side, side)


def test_random_baselines_point_at_chance():
    size, rng = 64, np.random.default_rng(0)
    box = (16, 16, 32, 32)  # a centred box, a quarter of the frame
    share = box[2] * box[3] / size ** 2
    assert abs(explain.random_point_hits(box, size, 2000, rng).mean() - share) <= 0.03
    # shuffled heatmaps whose peaks lie anywhere: their pointing score is also the box's share
    peaks = rng.integers(0, size, (2000, 2))
    heatmaps = {}
    for i, (x, y) in enumerate(peaks):
        heatmap = np.zeros((size, size))
        heatmap[y, x] = 1
        heatmaps[f"{i}.png", "Effusion"] = heatmap
    boxes = pd.DataFrame([{"Image Index": f"{i}.png", "Finding Label": "Effusion", "x": 16, "y": 16, "w": 32, "h": 32}
                          for i in range(2000)])
    scores = explain.score_boxes(heatmaps, boxes, size, original=size, repeats=1)
    assert abs(scores.loc["pointing", "shuffled heatmaps"] - share) <= 0.03
    assert abs(scores.loc["pointing", "random point"] - share) <= 0.03


def test_box_scoring_explains_the_class_of_the_box(monkeypatch):
    asked = []

    def spy(model, images_for, image_id, size=None, class_index=None):
        asked.append((image_id, class_index))
        return np.ones((8, 8)), 0

    monkeypatch.setattr(explain, "heatmap_at", spy)
    model = type("M", (), {"input": type("I", (), {"shape": (None, 8, 8, 3)})()})()
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion", "Atelectasis"],
                          "x": [0, 0], "y": [0, 0], "w": [512, 512], "h": [512, 512]})
    explain.score_models({"m": model}, boxes, images_for=None)
    assert sorted(asked) == [("a.png", 1), ("b.png", 3)]


def test_box_table_reports_the_area_of_each_method():
    heatmaps = {("a.png", "Effusion"): np.pad(np.ones((8, 8)), 28), ("b.png", "Effusion"): np.pad(np.ones((16, 16)), 24)}
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion"] * 2,
                          "x": [0, 0], "y": [0, 0], "w": [64, 64], "h": [64, 64]})
    table = explain.score_boxes(heatmaps, boxes, size=64, original=64)
    assert table.loc[explain.AREA, "Grad-CAM"] == pytest.approx((64 + 256) / 2 / 64 ** 2)
    assert table.loc[explain.AREA, "shuffled heatmaps"] == pytest.approx((64 + 256) / 2 / 64 ** 2)


def test_grid_titles_are_readable_and_say_no_pretrained_weights():
    model = blob_model()
    images = {"a.png": np.zeros((SIZE, SIZE), np.uint8)}
    fig = explain.gradcam_grid({"VGG16 (no pretrained weights)": model}, {"Effusion": "a.png"},
                               lambda ids, size: {i: images[i] for i in ids}, size=SIZE)
    title = fig.axes[0].title
    assert "no pretrained weights" in title.get_text()
    assert explain.shown_points(fig, title.get_fontsize()) >= 10
