"""Explainability: what the learnt resizer outputs, intermediate activations and Grad-CAM heatmaps."""
from __future__ import annotations

import weakref

import numpy as np
import pandas as pd


def to_display(image) -> np.ndarray:
    """Any 2-D or RGB float image, scaled to [0, 1] for imshow."""
    image = np.asarray(image, float)
    image = image.mean(axis=-1) if image.ndim == 3 else image
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-8), 0, 1)


def resizer_outputs(ch, chapter: str, model_name: str, count: int = 6):
    """(bilinear, learnt) resizes of the first training images by a trained model's resizer, as gray
    arrays on the input's scale (no per-image stretching, so the two can be compared)."""
    import tensorflow as tf

    model = ch.earlier_model(chapter, model_name)
    resizer = model.get_layer("learnable_resizer")
    size = resizer.output.shape[1]
    gray = np.asarray(ch.data.images("train", model.input.shape[1])[:count], np.float32) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    bilinear = tf.image.resize(rgb, (size, size)).numpy().mean(axis=-1)
    learnt = np.asarray(resizer(rgb, training=False)).mean(axis=-1)
    return list(bilinear), list(learnt)


def edge_strength(image) -> float:
    """Mean gradient magnitude of a gray image: larger when edges are sharper or contrast higher."""
    rows, columns = np.gradient(np.asarray(image, float))
    return float(np.hypot(rows, columns).mean())


def resizer_change(bilinear: list, learnt: list) -> str:
    """In words, computed: how far the learnt resize is from the bilinear one, and whether it has stronger edges."""
    difference = np.mean([np.abs(a - b).mean() for a, b in zip(learnt, bilinear)])
    ratio = np.mean([edge_strength(a) / max(edge_strength(b), 1e-8) for a, b in zip(learnt, bilinear)])
    word = "stronger" if ratio > 1.05 else "weaker" if ratio < 0.95 else "about the same"
    return (f"Over these {len(learnt)} images the learnt resize differs from the bilinear one by "
            f"{difference:.3f} on average (input pixel values run from 0 to 1), and its edges are {word} "
            f"(mean gradient magnitude {ratio:.2f} times the bilinear one's).")


def plot_resizer(bilinear: list, learnt: list, title: str, per_row: int = 2):
    """Per image: the bilinear resize, the learnt one (same gray scale), and their difference stretched to show."""
    import matplotlib.pyplot as plt

    from cxrlib.plots import wrapped

    rows = int(np.ceil(len(learnt) / per_row))
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(PAGE_INCHES, 1.45 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    low, high = np.percentile(np.concatenate([np.ravel(x) for x in (*bilinear, *learnt)]), [1, 99])
    for i, (a, b) in enumerate(zip(bilinear, learnt)):
        panels = axes[i // per_row, 3 * (i % per_row):3 * (i % per_row) + 3]
        difference = b - a
        scale = max(float(np.abs(difference).max()), 1e-8)
        panels[0].imshow(a, cmap="gray", vmin=low, vmax=high)
        panels[1].imshow(b, cmap="gray", vmin=low, vmax=high)
        panels[2].imshow(difference, cmap="coolwarm", vmin=-scale, vmax=scale)
        for ax, caption in zip(panels, (f"{i + 1}: bilinear", f"{i + 1}: learnt", f"difference ±{scale:.2f}")):
            ax.set_title(caption, fontsize=9)
    fig.suptitle(wrapped(title))
    fig.tight_layout()
    return fig


# --- intermediate activations -------------------------------------------------------------------

def activation_layers(model) -> list:
    """Every convolution and pooling layer at the model's top level, in order."""
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.MaxPooling2D)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def activations(model, image: np.ndarray) -> dict:
    """layer name -> its activation maps (h, w, channels) for one grey or RGB image in [0, 255]."""
    import keras

    chosen = activation_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in chosen])
    outputs = probe(as_model_input(model, image)[None], training=False)
    return {layer.name: np.asarray(out[0]) for layer, out in zip(chosen, outputs)}


def plot_activations(maps: np.ndarray, title: str, columns: int = 8, limit: int = 64):
    """The first `limit` channels of one layer's activations as a grid of small images, at the column's width."""
    import matplotlib.pyplot as plt

    from cxrlib.plots import wrapped

    count = min(limit, maps.shape[-1])
    columns = min(columns, count)
    rows = int(np.ceil(count / columns))
    side = PAGE_INCHES / columns
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_INCHES, rows * side + 0.7), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(maps[..., i], cmap="viridis")
    fig.suptitle(wrapped(f"{title} (first {count} of {maps.shape[-1]} maps, {maps.shape[0]}x{maps.shape[1]})"))
    fig.tight_layout()
    return fig


# --- Grad-CAM -----------------------------------------------------------------------------------

def _backbone_spec(nested):
    """The per-backbone facts of a nested keras.applications model, matched by its name (None: unknown)."""
    from cxrlib.models import backbones

    for spec in backbones.BACKBONES.values():
        if nested.name == spec.application.lower():
            return spec
    return None


def gradcam_target(model):
    """(layer name, nested model or None): where Grad-CAM reads the feature maps.

    The fused net: its concatenation of the pooled shallow and deep maps, so the shallow branches count;
    a nested backbone (VGG16, ResNet, DenseNet): the layer its facts declare (backbones.BACKBONES);
    otherwise the last convolution at the top level.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Concatenate) and len(layer.output.shape) == 4:
            return layer.name, None
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer.name, None
        if isinstance(layer, keras.Model) and len(layer.output.shape) == 4:
            spec = _backbone_spec(layer)
            return (spec.gradcam_layer if spec and spec.gradcam_layer else layer.layers[-1].name), layer
    raise ValueError(f"model {model.name} has no convolutional layer for Grad-CAM")


def target_description(model) -> dict:
    """The target layer and its grid, for the chapter's table of which map each model is explained on."""
    name, nested = gradcam_target(model)
    shape = (nested or model).get_layer(name).output.shape
    return {"target layer": name, "resolution": f"{shape[1]}x{shape[2]}", "channels": shape[3],
            "input": f"{model.input.shape[1]}x{model.input.shape[2]}"}


def _classifier(model):
    """The final Dense layer (named 'classifier' in every model of the book), searched in nested heads too."""
    import keras

    for layer in reversed(model.layers):
        if layer.name == "classifier":
            return layer
        if isinstance(layer, keras.Model) and not len(layer.output.shape) == 4:
            return _classifier(layer)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"model {model.name} has no Dense classifier for Grad-CAM")
    return dense[-1]


def _logits(classifier, features):
    """The classifier's pre-softmax class scores: its input times its kernel plus its bias."""
    import tensorflow as tf

    kernel, bias = (tf.cast(w, tf.float32) for w in (classifier.kernel, classifier.bias))
    return tf.matmul(tf.cast(features, tf.float32), kernel) + bias


def _maps_and_logits(model, layer=None):
    """A function image batch -> (target feature maps, pre-softmax class scores), through nested models."""
    import keras

    name, nested = (layer, None) if layer else gradcam_target(model)
    classifier = _classifier(model)
    if nested is None and classifier in model.layers:
        probe = keras.Model(model.inputs, [model.get_layer(name).output, classifier.input])
        return lambda x: (lambda maps, feats: (maps, _logits(classifier, feats)))(*probe(x, training=False))
    inner = keras.Model(nested.inputs, [nested.get_layer(name).output, nested.output]) if nested else None

    def run(x):
        maps = None
        for part in model.layers[1:]:  # the outer model is a chain: preprocessing, backbone, head
            if part is nested:
                maps, x = inner(x, training=False)
            elif isinstance(part, keras.Model) and classifier in part.layers:
                head = keras.Model(part.inputs, classifier.input)
                return maps, _logits(classifier, head(x, training=False))
            else:
                x = part(x, training=False)
        raise ValueError(f"model {model.name}: classifier not reached for Grad-CAM")
    return run


_FORWARDS = weakref.WeakKeyDictionary()  # model -> {target layer: its maps-and-logits function}


def _forward(model, layer=None):
    """_maps_and_logits, built once per model and target: building it wires a new Keras model over every layer,
    which for ResNet152 costs more than the gradient itself."""
    built = _FORWARDS.setdefault(model, {})
    if layer not in built:
        built[layer] = _maps_and_logits(model, layer)
    return built[layer]


def as_model_input(model, image) -> np.ndarray:
    """One grey (h, w), (h, w, 1) or RGB image as float32 with the channels the model's input takes."""
    image = np.asarray(image, np.float32)
    image = image[..., None] if image.ndim == 2 else image
    channels = model.input.shape[-1]
    if channels == 1 and image.shape[-1] == 3:
        return image.mean(axis=-1, keepdims=True)
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image


GRADCAM_BATCH = 32  # images per gradient pass: one eager pass of a deep net costs about the same for 1 or 32


def gradcam_cells_batch(model, images, class_indices=None, layer=None) -> list:
    """Grad-CAM of several images in one gradient pass per GRADCAM_BATCH: [(cells in [0, 1], class explained)].

    Each image's score depends on its own maps only (inference mode), so the gradient of the summed scores
    gives every image its own gradient. class_indices: one per image, None for its predicted class.
    """
    import tensorflow as tf

    classes = list(class_indices) if class_indices is not None else [None] * len(images)
    forward, results = _forward(model, layer), []
    for start in range(0, len(images), GRADCAM_BATCH):
        chunk = np.stack([as_model_input(model, image) for image in images[start:start + GRADCAM_BATCH]])
        with tf.GradientTape() as tape:
            maps, logits = forward(tf.convert_to_tensor(chunk))
            predicted = tf.argmax(logits, axis=1).numpy()
            chosen = [int(p if c is None else c) for p, c in zip(predicted, classes[start:start + GRADCAM_BATCH])]
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=0) * tf.eye(len(chosen)))
        grads = tape.gradient(score, maps)
        maps = tf.cast(maps, tf.float32)
        grads = tf.zeros_like(maps) if grads is None else tf.cast(grads, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
        results += [(np.clip(cam / (cam.max() + 1e-8), 0, 1), k) for cam, k in zip(cams, chosen)]
    return results


def gradcam_cells(model, image: np.ndarray, class_index=None, layer=None) -> tuple:
    """(Grad-CAM in [0, 1] on the target layer's own grid, class explained): Selvaraju et al.'s Grad-CAM.

    The gradient is that of the class's pre-softmax score (through the softmax it would fade as the
    model grows confident); class_index None explains the predicted class; layer overrides the target.
    The grid is kept, because where a coarse map points is the centre of its hottest cell.
    """
    return gradcam_cells_batch(model, [image], [class_index], layer)[0]


def gradcam(model, image: np.ndarray, class_index=None, layer=None) -> tuple:
    """(heatmap in [0, 1] at the image's size, class explained): Grad-CAM's cells resized bilinearly."""
    cells, class_index = gradcam_cells(model, image, class_index, layer)
    return upsample(cells, np.shape(image)[:2]), class_index


def _bilinear_axis(cells: int, size: int) -> tuple:
    """(lower cell, upper cell, weight of the upper) for each output pixel along one axis; half-pixel centres,
    edges held, as tf.image.resize's bilinear mode computes them."""
    source = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    lower = np.floor(source).astype(int)
    return lower, np.minimum(lower + 1, cells - 1), source - lower


def upsample(cells: np.ndarray, shape) -> np.ndarray:
    """A coarse map resized bilinearly to shape (rows, columns): what is drawn and boxed."""
    cells = np.asarray(cells, np.float32)
    top, bottom, down = _bilinear_axis(cells.shape[0], int(shape[0]))
    left, right, across = _bilinear_axis(cells.shape[1], int(shape[1]))
    rows = cells[top] * (1 - down)[:, None] + cells[bottom] * down[:, None]
    return (rows[:, left] * (1 - across) + rows[:, right] * across).astype(np.float32)


NO_SPATIAL_INFORMATION = "no spatial information at this input size"


def has_spatial_information(heatmap) -> bool:
    """Whether a map can say where: at least 2x2 cells and not constant (a 1x1 target map is neither)."""
    heatmap = np.asarray(heatmap, float)
    return heatmap.ndim == 2 and min(heatmap.shape) >= 2 and float(np.ptp(heatmap)) > 1e-6


# Grad-CAM's colours: a perceptually ordered map (dark: no weight, yellow: the map's maximum) that holds no
# cyan, so the radiologist's box, drawn in BOX_COLOUR, never blends into the heat.
CAM_CMAP = "inferno"
BOX_COLOUR = "cyan"
CAM_ALPHA = 0.45


def cam_colourbar(fig, bottom_inches: float = 0.3, label: str = "Grad-CAM weight (share of the map's maximum)"):
    """One horizontal colour bar for every Grad-CAM overlay of a figure, saying what its colours mean, in a strip
    bottom_inches above the figure's lower edge (leave about 0.9 inch free there)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    height = fig.get_figheight()
    cax = fig.add_axes([0.25, bottom_inches / height, 0.5, 0.13 / height])
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=CAM_CMAP), cax=cax, orientation="horizontal")
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    return bar


def overlay(ax, image: np.ndarray, heatmap: np.ndarray, title: str, box=None, fontsize: int = 10):
    """The image in gray, the heatmap in colour (CAM_CMAP) on top, and an optional (x, y, w, h) box in BOX_COLOUR.

    A heatmap without spatial information is not tinted over the image: the panel says so instead.
    """
    from matplotlib.patches import Rectangle

    ax.imshow(to_display(image), cmap="gray")
    if has_spatial_information(heatmap):
        ax.imshow(heatmap, cmap=CAM_CMAP, alpha=CAM_ALPHA, vmin=0, vmax=1)
    else:
        ax.text(0.5, 0.5, NO_SPATIAL_INFORMATION.replace(" at ", "\nat "), transform=ax.transAxes, ha="center",
                va="center", fontsize=max(fontsize - 2, 7), bbox={"facecolor": "white", "alpha": 0.85})
    if box is not None:
        ax.add_patch(Rectangle(box[:2], box[2], box[3], fill=False, edgecolor=BOX_COLOUR, linewidth=1.8))
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def heatmap_at(model, images_for, image_id: str, size=None, class_index=None) -> tuple:
    """Grad-CAM of one image at the model's own input size, resized to size x size (default: that input size)."""
    given = model.input.shape[1]
    cells, explained = gradcam_cells(model, images_for([image_id], given)[image_id], class_index)
    return upsample(cells, (size or given, size or given)), explained


def vote(classes: list) -> int:
    """The class most models chose; ties go to the first model's (as the browser's 'all models' row reads)."""
    counts = {k: classes.count(k) for k in classes}
    return next(k for k in classes if counts[k] == max(counts.values()))


def heatmap_source(models: dict, images_for, size: int):
    """A function (model name or 'all models', image id, class index) -> Grad-CAM at size, for the browser.

    Every heatmap explains one named class: the one given, else the model's prediction ('all models': the
    class most models predict). 'All models' averages the models' maps of that class that have spatial
    information; when none has, the result is constant and reads as such. Maps are computed once and remembered.
    """
    memory = {}

    def one(name: str, image_id: str, class_index=None):
        """One model's map of a class (None: its prediction) and the class explained."""
        key = (name, image_id, class_index)
        if key not in memory:
            memory[key] = heatmap_at(models[name], images_for, image_id, size, class_index)
            memory[name, image_id, memory[key][1]] = memory[key]
        return memory[key]

    def compute(wanted) -> None:
        """Fill memory for (model, image id, class or None) keys, one batched Grad-CAM pass per model."""
        for name in models:
            keys = [key for key in dict.fromkeys(wanted) if key[0] == name and key not in memory]
            if not keys:
                continue
            side = models[name].input.shape[1]
            images = images_for([image_id for _, image_id, _ in keys], side)
            found = gradcam_cells_batch(models[name], [images[i] for _, i, _ in keys], [k for _, _, k in keys])
            for (_, image_id, class_index), (cells, explained) in zip(keys, found):
                memory[name, image_id, class_index] = memory[name, image_id, explained] = (
                    upsample(cells, (size, size)), explained)

    def prefetch(pairs) -> None:
        """Compute the maps of many (model or 'all models', image id) pairs in batches, before they are asked for."""
        pairs = list(pairs)
        compute([(n, i, None) for name, i in pairs for n in (models if name not in models else [name])])
        compute([(n, i, vote([memory[m, i, None][1] for m in models])) for name, i in pairs if name not in models
                 for n in models])

    def heatmap(name: str, image_id: str, class_index=None):
        if name in models:
            return one(name, image_id, class_index)[0]
        if class_index is None:
            class_index = vote([one(n, image_id)[1] for n in models])
        maps = [one(n, image_id, int(class_index))[0] for n in models]
        informative = [m for m in maps if has_spatial_information(m)]
        return np.mean(informative, axis=0) if informative else np.zeros((size, size), np.float32)
    heatmap.prefetch = prefetch
    return heatmap


# A figure drawn this wide (inches at matplotlib's 100 dpi) is shown at the book's ~700 px column
# without shrinking, so a 10-point title stays 10 points on the page.
PAGE_INCHES = 7.0


def shown_points(fig, fontsize: float, column_px: int = 700) -> float:
    """The size a font of the figure appears at once the figure is scaled to the book's column."""
    width_px = fig.get_figwidth() * fig.dpi
    return fontsize * min(1.0, column_px / width_px)


def gradcam_grid(models: dict, examples: dict, images_for, boxes=None, size: int = 256, predicted=None):
    """Rows: every model (its label says if it had no pretrained weights); columns: one image per class.

    Each heatmap explains the image's true class (examples: class name -> image id), the class of its box;
    predicted (model -> {image id: class index}) adds what the model predicted to each title.
    """
    import matplotlib.pyplot as plt

    from cxrlib.config import CLASSES
    from cxrlib.plots import short_lines

    columns = max(len(examples), 1)
    fig, axes = plt.subplots(len(models), columns, figsize=(PAGE_INCHES, 2.9 * len(models) + 1.3),
                             squeeze=False)
    shown = images_for(list(examples.values()), size)
    for row, (name, model) in zip(axes, models.items()):
        for ax, (label, image_id) in zip(row, examples.items()):
            box = None
            if boxes is not None:
                mine = boxes[(boxes["Image Index"] == image_id) & (boxes["Finding Label"] == label)]
                box = mine.iloc[0][["x", "y", "w", "h"]].to_numpy(float) * size / 1024 if len(mine) else None
            heatmap, _ = heatmap_at(model, images_for, image_id, size, CLASSES.index(label))
            guess = (predicted or {}).get(name, {}).get(image_id)
            said = f"; said {CLASSES[guess]}" if guess is not None else ""
            overlay(ax, shown[image_id], heatmap, f"{short_lines(name)}\n{label}{said}", box)
    fig.suptitle(f"Grad-CAM of the true class ({BOX_COLOUR}: radiologist's box, where NIH has one)", fontsize=11)
    # room for the title above the panel titles, and for the colour bar below the panels
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1 - 0.4 / fig.get_figheight()))
    cam_colourbar(fig)
    return fig


# --- heatmaps against NIH's boxes ------------------------------------------------------------------

# Wang et al. 2017 (ChestX-ray8) count a localisation as correct when IoBB reaches T(IoBB) = 0.1, 0.25, 0.5,
# 0.75 or 0.9; IoU is scored at the same thresholds.
THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
LEVEL = 0.5  # a heatmap's predicted box surrounds its largest region at or above this share of its maximum
# The pointing game's tolerance in pixels of NIH's 1024-pixel frame. Zhang et al. (2018) count a hit within
# 15 pixels of the box; we count only a peak inside the box.
POINTING_TOLERANCE = 0
AREA = "predicted box area (share of frame)"
NO_INFORMATION = "maps without spatial information (share)"


def scoring_rules(original: int = 1024) -> str:
    """The box-scoring rules in words, made from the constants the scores are computed with."""
    thresholds = ", ".join(f"{t:g}" for t in THRESHOLDS)
    tolerance = ("no tolerance: the point must fall inside the box (Zhang et al. 2018 allow 15 pixels)"
                 if not POINTING_TOLERANCE else
                 f"a tolerance of {POINTING_TOLERANCE} pixels of the {original}-pixel frame, as Zhang et al. 2018")
    return (f"**How the boxes are scored.** A heatmap's predicted box surrounds its largest region at or above "
            f"{LEVEL:.0%} of its maximum. IoU and IoBB are counted at the thresholds Wang et al. (2017) used for "
            f"IoBB, T = {thresholds}. The pointing game's point is the centre of the hottest cell of the "
            f"model's own Grad-CAM grid (on a 7x7 grid of a 224-pixel image, a cell is 32 pixels wide), not the "
            f"first pixel of the flat top that resizing makes of that cell; it is scored with {tolerance}. "
            f"The shuffled baseline moves each heatmap to another image *of the same label*, so every boxed "
            f"class counts by its number of boxes (a label with a single boxed image has no shuffled score). "
            f"A map of fewer than 2x2 cells, or a constant one, has {NO_SPATIAL_INFORMATION}: the row "
            f"'{NO_INFORMATION}' gives their share, and their boxes and points mean nothing.")


def read_boxes(path) -> pd.DataFrame:
    """NIH's BBox_List_2017.csv with plain column names and 'Infiltrate' renamed to our 'Infiltration'."""

    table = pd.read_csv(path)
    table = table.iloc[:, :6]
    table.columns = ["Image Index", "Finding Label", "x", "y", "w", "h"]
    table["Finding Label"] = table["Finding Label"].replace({"Infiltrate": "Infiltration"})
    return table


def predicted_box(heatmap: np.ndarray, level: float = LEVEL):
    """(x, y, w, h) around the largest connected region where the heatmap reaches level x its maximum."""
    from scipy import ndimage

    if heatmap.max() <= 0:
        return 0, 0, 0, 0
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


def inside(x, y, truth, tolerance: float = 0.0) -> bool:
    """Whether point (x, y) lies in the (x, y, w, h) box, or within tolerance pixels of it."""
    if not tolerance:
        return truth[0] <= x < truth[0] + truth[2] and truth[1] <= y < truth[1] + truth[3]
    dx = max(truth[0] - x, 0.0, x - truth[0] - truth[2])
    dy = max(truth[1] - y, 0.0, y - truth[1] - truth[3])
    return float(np.hypot(dx, dy)) <= tolerance


def peak_point(heatmap: np.ndarray, size=None) -> tuple:
    """(x, y) where a map points, in a size x size frame: the centre of its hottest cell (first one on ties).

    On a coarse map this is the cell's centre; resizing first would make the cell a flat top whose first
    pixel, at its top-left edge, is what argmax returns. A full-size map's cells are its pixels.
    """
    heatmap = np.asarray(heatmap)
    rows, columns = heatmap.shape
    size = size or columns
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return (column + 0.5) * size / columns, (row + 0.5) * size / rows


def pointing_hit(heatmap: np.ndarray, truth, size=None, tolerance: float = 0.0) -> bool:
    """Whether the heatmap's peak cell centre falls inside the box (Zhang et al.'s pointing game)."""
    return inside(*peak_point(heatmap, size), truth, tolerance)


def score_heatmap(heatmap: np.ndarray, truth, size=None, tolerance: float = 0.0) -> dict:
    """IoU and IoBB hits at every threshold, the pointing game and the predicted box's share of the frame.

    heatmap: a map at size x size, or a coarser Grad-CAM grid that is resized for the box (not for the point).
    """
    heatmap = np.asarray(heatmap, float)
    size = size or heatmap.shape[1]
    frame = heatmap if heatmap.shape == (size, size) else upsample(heatmap, (size, size))
    pred = predicted_box(frame)
    iou, iobb = box_overlap(pred, truth)
    row = {f"IoU>={t}": iou >= t for t in THRESHOLDS}
    row.update({f"IoBB>={t}": iobb >= t for t in THRESHOLDS})
    row["pointing"] = pointing_hit(heatmap, truth, size, tolerance)
    row[AREA] = pred[2] * pred[3] / size ** 2
    row[NO_INFORMATION] = not has_spatial_information(heatmap)
    return row


def random_point_hits(truth, size: int, draws: int, rng) -> np.ndarray:
    """The pointing game played by a uniformly random pixel's centre, draws times: chance is the box's share."""
    xs, ys = rng.integers(0, size, draws) + 0.5, rng.integers(0, size, draws) + 0.5
    return np.array([inside(x, y, truth) for x, y in zip(xs, ys)])


def shuffled_pairs(ids: list, rng) -> dict:
    """image id -> another image's id, a random derangement: each heatmap lands on a wrong image."""
    if len(ids) < 2:
        return {}
    while True:
        order = rng.permutation(len(ids))
        if (order != np.arange(len(ids))).all():
            return {ids[i]: ids[j] for i, j in enumerate(order)}


def shuffled_within_labels(scored: list, heatmaps: dict, rng) -> list:
    """(box, heatmap of another image of the box's label) for one round of the shuffled baseline.

    Each label's heatmaps are deranged among that label's boxed images only, so every box of a label with
    two or more images is scored in every round, whatever the other labels' sizes.
    """
    pairs = []
    for label in sorted({box["Finding Label"] for box in scored}):
        mine = [box for box in scored if box["Finding Label"] == label]
        other = shuffled_pairs(sorted({box["Image Index"] for box in mine}), rng)
        pairs += [(box, heatmaps[other[box["Image Index"]], label]) for box in mine if box["Image Index"] in other]
    return pairs


def box_truth(box, size: int, original: int) -> np.ndarray:
    """A box row's (x, y, w, h), scaled from the original frame to size pixels."""
    return np.array([box["x"], box["y"], box["w"], box["h"]], float) * size / original


def score_boxes(heatmaps: dict, boxes, size: int, original: int = 1024, repeats: int = 20, seed: int = 0,
                tolerance: float = POINTING_TOLERANCE):
    """Hit rates of heatmaps against NIH boxes, beside two baselines with matched statistics.

    heatmaps: (image id, box's class) -> heatmap at size x size or on its Grad-CAM grid, each explaining
    the class of its box. 'shuffled heatmaps': the same heatmaps on other images of the same label (repeats
    derangements), so their shape and area match; 'random point': a uniformly random pixel for the pointing
    game. Boxes are in the original frame (NIH: 1024 pixels) and scaled to size; tolerance is in its pixels.
    """
    rng = np.random.default_rng(seed)
    scored = [box for _, box in boxes.iterrows() if (box["Image Index"], box["Finding Label"]) in heatmaps]
    if not scored:
        return pd.DataFrame()
    near = tolerance * size / original
    ours, shuffled, points = [], [], []
    for box in scored:
        truth = box_truth(box, size, original)
        ours.append(score_heatmap(heatmaps[box["Image Index"], box["Finding Label"]], truth, size, near))
        points.append(random_point_hits(truth, size, repeats, rng).mean())
    for _ in range(repeats):
        shuffled += [score_heatmap(heatmap, box_truth(box, size, original), size, near)
                     for box, heatmap in shuffled_within_labels(scored, heatmaps, rng)]
    rows = list(ours[0])
    table = pd.DataFrame({"Grad-CAM": pd.DataFrame(ours).mean(),
                          "shuffled heatmaps": pd.DataFrame(shuffled).mean() if shuffled else np.nan,
                          "random point": pd.Series({"pointing": float(np.mean(points))})}).reindex(rows)
    table["boxes"] = len(ours)
    return table.astype(float)


def score_models(models: dict, boxes, images_for, repeats: int = 20, seed: int = 0) -> pd.DataFrame:
    """Box-scoring table for every model (columns: model x method): each heatmap explains its box's class and
    is kept on its Grad-CAM grid, so the pointing game reads the hottest cell."""
    from cxrlib.config import CLASSES

    tables = {}
    for name, model in models.items():
        wanted = sorted({(i, label) for i, label in zip(boxes["Image Index"], boxes["Finding Label"])})
        shown = images_for(sorted({i for i, _ in wanted}), model.input.shape[1])
        found = gradcam_cells_batch(model, [shown[i] for i, _ in wanted], [CLASSES.index(k) for _, k in wanted])
        heatmaps = {pair: cells for pair, (cells, _) in zip(wanted, found)}
        tables[name] = score_boxes(heatmaps, boxes, model.input.shape[1], repeats=repeats, seed=seed)
    tables = {k: v for k, v in tables.items() if len(v)}
    return pd.concat(tables, axis=1) if tables else pd.DataFrame()
