"""Explainability: what the learnt resizer outputs, intermediate activations and Grad-CAM heatmaps."""
from __future__ import annotations

import numpy as np


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
