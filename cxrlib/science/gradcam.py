"""Grad-CAM (Selvaraju et al., ICCV 2017) and intermediate activations: where a network looks for a class.

Figures of these maps are cxrlib.present.gradcam's; scoring them against radiologists' boxes is cxrlib.science.boxes'.
"""
from __future__ import annotations

import weakref

import numpy as np


# --- intermediate activations -------------------------------------------------------------------

def activations(model, image: np.ndarray) -> dict:
    """layer name -> its activation maps (h, w, channels) for one grey or RGB image in [0, 255], of every
    convolution and pooling layer at the model's top level, in order."""
    import keras

    chosen = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    probe = keras.Model(model.inputs, [layer.output for layer in chosen])
    outputs = probe(as_model_input(model, image)[None], training=False)
    return {layer.name: np.asarray(out[0]) for layer, out in zip(chosen, outputs)}


# --- Grad-CAM -----------------------------------------------------------------------------------

def _backbone_spec(nested):
    """The per-backbone facts of a nested keras.applications model, matched by its name (None: unknown)."""
    from cxrlib.core import backbones

    return next((spec for spec in backbones.BACKBONES.values() if nested.name == spec.application.lower()), None)


def gradcam_target(model):
    """(layer name, nested model or None): where Grad-CAM reads the feature maps.

    The fused net: its concatenation of the pooled shallow and deep maps, so the shallow branches count;
    a nested backbone (VGG16, ResNet, DenseNet): the layer its facts declare (core.backbones.BACKBONES);
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


def _logits(classifier, features):
    """The classifier's pre-softmax class scores: its input times its kernel plus its bias."""
    import tensorflow as tf

    kernel, bias = (tf.cast(w, tf.float32) for w in (classifier.kernel, classifier.bias))
    return tf.matmul(tf.cast(features, tf.float32), kernel) + bias


def _maps_and_logits(model, layer=None):
    """A function image batch -> (target feature maps, pre-softmax class scores), through nested models."""
    import keras

    from cxrlib.science.training import classifier_layer

    name, nested = (layer, None) if layer else gradcam_target(model)
    classifier = classifier_layer(model)
    if classifier is None:
        raise ValueError(f"model {model.name} has no Dense classifier for Grad-CAM")
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


def has_spatial_information(heatmap) -> bool:
    """Whether a map can say where: at least 2x2 cells and not constant (a 1x1 target map is neither)."""
    heatmap = np.asarray(heatmap, float)
    return heatmap.ndim == 2 and min(heatmap.shape) >= 2 and float(np.ptp(heatmap)) > 1e-6


def heatmap_at(model, images_for, image_id: str, size=None, class_index=None) -> tuple:
    """Grad-CAM of one image at the model's own input size, resized to size x size (default: that input size)."""
    given = model.input.shape[1]
    cells, explained = gradcam_cells(model, images_for([image_id], given)[image_id], class_index)
    return upsample(cells, (size or given, size or given)), explained
