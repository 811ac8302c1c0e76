"""tf.data input pipelines and the report's augmentation layers.

Images travel as 8-bit grey (N, H, W, 1): a quarter of a float32 byte per pixel and channel, so two CPU
cores feed a GPU. The models' first layer (cxrlib.science.models.inputs.ThreeChannels) casts and makes the three
channels on the device. Shuffled datasets are infinite and epoch-aware: the order of epoch e depends only
on (seed, e), so a run resumed at epoch e sees exactly the batches an uninterrupted run would have seen;
fit them with steps_per_epoch(n, batch_size).
"""
from __future__ import annotations

import math

import numpy as np

# Arrays up to this size are handed to tf.data whole; larger ones stream from the memory map in batches.
IN_GRAPH_LIMIT = 1 << 30


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch of n items; the last batch of an epoch may be smaller."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"steps_per_epoch needs n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    return math.ceil(n / batch_size)


def epoch_batches(n: int, batch_size: int, seed: int, start_epoch: int = 0):
    """Infinite dataset of int64 index batches: epoch e is a stateless shuffle of range(n) keyed by (seed, e).

    Batches never straddle two epochs, so each epoch is exactly steps_per_epoch(n, batch_size) batches.
    """
    import tensorflow as tf

    steps_per_epoch(n, batch_size)  # validates n and batch_size

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                         seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    return tf.data.Dataset.counter(start_epoch, dtype=tf.int64).flat_map(one_epoch)


def ordered_batches(n: int, batch_size: int):
    """Finite dataset of int64 index batches covering range(n) once, in order."""
    import tensorflow as tf

    steps_per_epoch(max(n, 1), batch_size)
    return tf.data.Dataset.range(n).batch(batch_size)


def index_batches(n: int, batch_size: int, shuffle: bool, seed: int, start_epoch: int = 0):
    """Shuffled: the infinite epoch-aware stream; otherwise one ordered pass."""
    return epoch_batches(n, batch_size, seed, start_epoch) if shuffle else ordered_batches(n, batch_size)


def make_dataset(images: np.ndarray, labels=None, batch_size: int = 16, shuffle: bool = False,
                 seed: int = 42, start_epoch: int = 0):
    """Batches of uint8 grey images (B, H, W, 1), with labels when given, prefetched.

    Arrays over IN_GRAPH_LIMIT bytes (e.g. a large memory-mapped cache) are read batch by batch
    from the map instead of being copied into the graph.
    """
    import tensorflow as tf

    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"make_dataset needs (N, H, W) uint8 images, got shape {images.shape} dtype {images.dtype}")
    n = len(images)
    batches = index_batches(n, batch_size, shuffle, seed, start_epoch)
    read = _in_graph_reader(images) if images.nbytes <= IN_GRAPH_LIMIT else _memmap_reader(images)
    if labels is None:
        ds = batches.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        label_tensor = tf.constant(np.asarray(labels))
        _check_lengths(n, len(label_tensor))
        ds = batches.map(lambda idx: (read(idx), tf.gather(label_tensor, idx)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def array_dataset(features: np.ndarray, labels, batch_size: int = 32, shuffle: bool = False, seed: int = 42,
                  start_epoch: int = 0, copies: int = 1):
    """Batches of precomputed float32 features (e.g. a frozen backbone's output) with their labels.

    features may stack `copies` versions of the same items, copy after copy (a backbone's features of augmented
    copies of the images): epoch e of the shuffled stream reads copy e mod copies.
    """
    import tensorflow as tf

    _check_lengths(len(features), len(labels) * copies)
    n = len(labels)
    values = tf.constant(np.asarray(features, np.float32))
    label_tensor = tf.constant(np.asarray(labels))
    batches = index_batches(n, batch_size, shuffle, seed, start_epoch)
    if copies > 1:
        steps = steps_per_epoch(n, batch_size)
        batches = batches.enumerate(start_epoch * steps).map(lambda b, idx: idx + (b // steps) % copies * n)
    ds = batches.map(lambda idx: (tf.gather(values, idx), tf.gather(label_tensor, idx % n)),
                     num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_lengths(n_images: int, n_labels: int):
    """Images and labels must pair up one to one."""
    if n_images != n_labels:
        raise ValueError(f"{n_images} images but {n_labels} labels; each image needs exactly one label")


def _in_graph_reader(images: np.ndarray):
    """index batch -> (B, H, W, 1) uint8, gathered from one in-memory tensor."""
    import tensorflow as tf

    pixels = tf.constant(np.ascontiguousarray(images))
    return lambda idx: tf.expand_dims(tf.gather(pixels, idx), -1)


def _memmap_reader(images: np.ndarray):
    """index batch -> (B, H, W, 1) uint8, one numpy read per batch from the (memory-mapped) array."""
    import tensorflow as tf

    height, width = images.shape[1:]

    def read(idx):
        batch = tf.numpy_function(lambda i: _read_rows(images, i), [idx], tf.uint8, stateful=False)
        return tf.reshape(batch, [-1, height, width, 1])

    return read


def _read_rows(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows idx of the array; a contiguous run is sliced, others read in sorted order and put back."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return np.ascontiguousarray(images[idx[0]:idx[-1] + 1])
    order = np.argsort(idx)
    out = np.empty((len(idx), *images.shape[1:]), np.uint8)
    out[order] = images[idx[order]]
    return out
