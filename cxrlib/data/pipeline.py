"""tf.data input pipelines and the report's augmentation layers."""
from __future__ import annotations

import numpy as np

# Arrays up to this size are handed to tf.data whole; larger ones stream from the memory map.
IN_GRAPH_LIMIT = 1 << 30


def make_dataset(images: np.ndarray, labels=None, batch_size: int = 16, shuffle: bool = False,
                 seed: int = 42):
    """Batches of float32 RGB images in [0, 255] (the models rescale), prefetched."""
    import tensorflow as tf

    n = len(images)
    if images.nbytes <= IN_GRAPH_LIMIT:
        pieces = np.asarray(images) if labels is None else (np.asarray(images), np.asarray(labels))
        ds = tf.data.Dataset.from_tensor_slices(pieces)
    else:
        ds = _streamed(images, labels)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_to_rgb, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def array_dataset(features: np.ndarray, labels, batch_size: int = 32, shuffle: bool = False, seed: int = 42):
    """Batches of precomputed features (e.g. a frozen backbone's output) with their labels."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(features, np.float32), np.asarray(labels)))
    if shuffle:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _streamed(images, labels):
    """Read a large memory-mapped array one image at a time instead of copying it into the graph."""
    import tensorflow as tf

    size = images.shape[1:]
    image_spec = tf.TensorSpec(size, tf.uint8)
    if labels is None:
        return tf.data.Dataset.from_generator(lambda: iter(images), output_signature=image_spec)
    return tf.data.Dataset.from_generator(
        lambda: zip(images, labels), output_signature=(image_spec, tf.TensorSpec((), tf.int64)))


def _to_rgb(images, labels=None):
    """Grayscale uint8 to three float channels, the layout every backbone expects."""
    import tensorflow as tf

    rgb = tf.repeat(tf.cast(images, tf.float32)[..., None], 3, axis=-1)
    return rgb if labels is None else (rgb, labels)


def augmentation(contrast: bool = False, seed: int = 42):
    """The report's augmentation: horizontal flip and rotation 0.2, optionally random contrast."""
    import keras

    layers = [keras.layers.RandomFlip("horizontal", seed=seed),
              keras.layers.RandomRotation(0.2, seed=seed)]
    if contrast:
        layers.append(keras.layers.RandomContrast(0.2, seed=seed))
    return keras.Sequential(layers, name="augmentation")
