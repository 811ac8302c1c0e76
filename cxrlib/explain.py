"""Explainability: what the learnt resizer outputs, intermediate activations and Grad-CAM heatmaps."""
from __future__ import annotations

import numpy as np
import pandas as pd


def to_display(image) -> np.ndarray:
    """Any 2-D or RGB float image, scaled to [0, 1] for imshow."""
    image = np.asarray(image, float)
    image = image.mean(axis=-1) if image.ndim == 3 else image
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-8), 0, 1)


def resizer_outputs(ch, chapter: str, model_name: str, count: int = 6):
    """(bilinear, learnt) resizes of the first training images by a trained model's resizer."""
    import tensorflow as tf

    model = ch.earlier_model(chapter, model_name)
    resizer = model.get_layer("learnable_resizer")
    size = resizer.output.shape[1]
    gray = np.asarray(ch.data.images("train", model.input.shape[1])[:count], np.float32) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    bilinear = tf.image.resize(rgb, (size, size)).numpy()
    learnt = np.asarray(resizer(rgb, training=False))
    return [to_display(b) for b in bilinear], [to_display(x) for x in learnt]


# --- intermediate activations -------------------------------------------------------------------

def activation_layers(model) -> list:
    """Every convolution and pooling layer at the model's top level, in order."""
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.MaxPooling2D)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def activations(model, image: np.ndarray) -> dict:
    """layer name -> its activation maps (h, w, channels) for one RGB image in [0, 255]."""
    import keras

    chosen = activation_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in chosen])
    outputs = probe(np.asarray(image, np.float32)[None], training=False)
    return {layer.name: np.asarray(out[0]) for layer, out in zip(chosen, outputs)}


def plot_activations(maps: np.ndarray, title: str, columns: int = 16, limit: int = 64):
    """The first `limit` channels of one layer's activations as a grid of small images."""
    import matplotlib.pyplot as plt

    count = min(limit, maps.shape[-1])
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.95 + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(maps[..., i], cmap="viridis")
    fig.suptitle(f"{title} (first {count} of {maps.shape[-1]} maps, {maps.shape[0]}x{maps.shape[1]})")
    fig.tight_layout()
    return fig


# --- Grad-CAM -----------------------------------------------------------------------------------

def gradcam_target(model):
    """(layer name, nested model or None): the last convolution at the top level, or the output of a
    nested backbone (VGG16, ResNet, DenseNet) whose final feature map comes last."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer.name, None
        if isinstance(layer, keras.Model) and len(layer.output.shape) == 4:
            return layer.layers[-1].name, layer
    raise ValueError(f"model {model.name} has no convolutional layer for Grad-CAM")


def _maps_and_probs(model):
    """A function image batch -> (target feature maps, class probabilities), through nested backbones."""
    import keras

    name, nested = gradcam_target(model)
    if nested is None:
        probe = keras.Model(model.inputs, [model.get_layer(name).output, model.output])
        return lambda x: probe(x, training=False)
    inner = keras.Model(nested.inputs, [nested.get_layer(name).output, nested.output])

    def run(x):
        maps = None
        for layer in model.layers[1:]:  # the outer model is a chain: preprocessing, backbone, head
            if layer is nested:
                maps, x = inner(x, training=False)
            else:
                x = layer(x, training=False)
        return maps, x
    return run


def gradcam(model, image: np.ndarray, class_index=None) -> tuple:
    """(heatmap in [0, 1] at the image's size, class explained): Selvaraju et al.'s Grad-CAM."""
    import tensorflow as tf

    batch = tf.convert_to_tensor(np.asarray(image, np.float32)[None])
    forward = _maps_and_probs(model)
    with tf.GradientTape() as tape:
        maps, probs = forward(batch)
        class_index = int(tf.argmax(probs[0])) if class_index is None else int(class_index)
        score = probs[:, class_index]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[0]
    cam = cam / (tf.reduce_max(cam) + 1e-8)
    heatmap = tf.image.resize(cam[..., None], image.shape[:2])[..., 0].numpy()
    return np.clip(heatmap, 0, 1), class_index


def overlay(ax, image: np.ndarray, heatmap: np.ndarray, title: str, box=None):
    """The image in gray, the heatmap in colour on top, and an optional (x, y, w, h) box in red."""
    from matplotlib.patches import Rectangle

    ax.imshow(to_display(image), cmap="gray")
    ax.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
    if box is not None:
        ax.add_patch(Rectangle(box[:2], box[2], box[3], fill=False, edgecolor="red", linewidth=1.5))
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def heatmap_at(model, images_for, image_id: str, size=None) -> tuple:
    """Grad-CAM of one image at the model's own input size, optionally resized to size x size."""
    import tensorflow as tf

    side = model.input.shape[1]
    gray = images_for([image_id], side)[image_id]
    heatmap, explained = gradcam(model, np.repeat(gray[..., None], 3, axis=-1))
    if size and size != side:
        heatmap = tf.image.resize(heatmap[..., None], (size, size))[..., 0].numpy()
    return heatmap, explained


def heatmap_source(models: dict, images_for, size: int):
    """A function (model name or 'all models', image id) -> Grad-CAM at size, for the widget browser.

    'all models' averages every model's heatmap. Heatmaps are computed on demand and remembered.
    """
    memory = {}

    def heatmap(name: str, image_id: str):
        names = list(models) if name not in models else [name]
        for n in names:
            if (n, image_id) not in memory:
                memory[n, image_id] = heatmap_at(models[n], images_for, image_id, size)[0]
        return np.mean([memory[n, image_id] for n in names], axis=0)
    return heatmap


def gradcam_grid(models: dict, examples: dict, images_for, boxes=None, size: int = 256):
    """Rows: one image per class (examples: class name -> image id); columns: every model's heatmap."""
    import matplotlib.pyplot as plt

    from cxrlib.config import CLASSES

    fig, axes = plt.subplots(len(examples), len(models), figsize=(2.6 * len(models), 2.8 * len(examples)),
                             squeeze=False)
    shown = images_for(list(examples.values()), size)
    for row, (label, image_id) in zip(axes, examples.items()):
        box = None
        if boxes is not None and image_id in set(boxes["Image Index"]):
            box = boxes[boxes["Image Index"] == image_id].iloc[0][["x", "y", "w", "h"]].to_numpy(float) * size / 1024
        for ax, (name, model) in zip(row, models.items()):
            heatmap, explained = heatmap_at(model, images_for, image_id, size)
            overlay(ax, shown[image_id], heatmap, f"{name}\ntrue {label}, shows {CLASSES[explained]}", box)
    fig.suptitle("Grad-CAM: where each model looks (red: radiologist's box, where NIH has one)")
    fig.tight_layout()
    return fig


# --- heatmaps against NIH's boxes ------------------------------------------------------------------

THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)  # Wang et al. 2017


def read_boxes(path) -> pd.DataFrame:
    """NIH's BBox_List_2017.csv with plain column names and 'Infiltrate' renamed to our 'Infiltration'."""

    table = pd.read_csv(path)
    table = table.iloc[:, :6]
    table.columns = ["Image Index", "Finding Label", "x", "y", "w", "h"]
    table["Finding Label"] = table["Finding Label"].replace({"Infiltrate": "Infiltration"})
    return table


def predicted_box(heatmap: np.ndarray, level: float = 0.5):
    """(x, y, w, h) around the largest connected region where the heatmap reaches level x its maximum."""
    from scipy import ndimage

    regions, count = ndimage.label(heatmap >= level * heatmap.max())
    if count == 0:
        return 0, 0, 0, 0
    largest = 1 + int(np.argmax(ndimage.sum(np.ones_like(heatmap), regions, range(1, count + 1))))
    ys, xs = np.nonzero(regions == largest)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def box_overlap(pred, truth) -> tuple:
    """(IoU, IoBB) of two (x, y, w, h) boxes; IoBB divides the overlap by the predicted box's area."""
    x0, y0 = max(pred[0], truth[0]), max(pred[1], truth[1])
    x1, y1 = min(pred[0] + pred[2], truth[0] + truth[2]), min(pred[1] + pred[3], truth[1] + truth[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    pred_area, truth_area = pred[2] * pred[3], truth[2] * truth[3]
    union = pred_area + truth_area - inter
    return (inter / union if union else 0.0), (inter / pred_area if pred_area else 0.0)


def pointing_hit(heatmap: np.ndarray, truth) -> bool:
    """Whether the heatmap's maximum falls inside the box (Zhang et al.'s pointing game)."""
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return truth[0] <= x < truth[0] + truth[2] and truth[1] <= y < truth[1] + truth[3]


def score_heatmap(heatmap: np.ndarray, truth) -> dict:
    """IoU and IoBB hits at every threshold, and the pointing game, for one heatmap and box (heatmap pixels)."""
    iou, iobb = box_overlap(predicted_box(heatmap), truth)
    row = {f"IoU>={t}": iou >= t for t in THRESHOLDS}
    row.update({f"IoBB>={t}": iobb >= t for t in THRESHOLDS})
    row["pointing"] = pointing_hit(heatmap, truth)
    return row


def random_heatmap(shape, rng, smooth: float = 8.0) -> np.ndarray:
    """Smoothed noise with the blobby look of a heatmap: the baseline any method must beat."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random(shape), smooth)
    return (noise - noise.min()) / max(noise.max() - noise.min(), 1e-8)


def score_models(models: dict, boxes, images_for) -> pd.DataFrame:
    """Box-scoring table for every model (columns: model x {Grad-CAM, random heatmaps, boxes})."""

    ids = sorted(set(boxes["Image Index"]))
    tables = {}
    for name, model in models.items():
        heatmaps = {i: heatmap_at(model, images_for, i)[0] for i in ids}
        tables[name] = score_boxes(heatmaps, boxes, model.input.shape[1])
    tables = {k: v for k, v in tables.items() if len(v)}
    return pd.concat(tables, axis=1) if tables else pd.DataFrame()


def score_boxes(heatmaps: dict, boxes, size: int, original: int = 1024, repeats: int = 20, seed: int = 0):
    """Hit rates of the heatmaps (image id -> heatmap at size x size) against NIH boxes, beside random heatmaps.

    Boxes are in the original 1024-pixel frame and are scaled to the heatmap's size.
    """

    rng = np.random.default_rng(seed)
    ours, baseline = [], []
    for _, box in boxes.iterrows():
        if box["Image Index"] not in heatmaps:
            continue
        truth = np.array([box["x"], box["y"], box["w"], box["h"]]) * size / original
        ours.append(score_heatmap(heatmaps[box["Image Index"]], truth))
        baseline += [score_heatmap(random_heatmap((size, size), rng), truth) for _ in range(repeats)]
    if not ours:
        return pd.DataFrame()
    return pd.DataFrame({"Grad-CAM": pd.DataFrame(ours).mean(), "random heatmaps": pd.DataFrame(baseline).mean(),
                         "boxes": len(ours)})
