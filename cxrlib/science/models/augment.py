"""The report's data augmentation as Keras layers inside the model: flips, rotations and, where asked, contrast.

Every random layer draws from a seed stream of its own, derived from the run's seed (layer_seeds).
"""
from __future__ import annotations

import numpy as np

# RandomContrast's factor as (lower, upper): factors are drawn in [1 - 0.2, 1 + 0.2]. A single 0.2 would
# draw only in [1, 1.2] in Keras 3, so contrast would never be lowered.
CONTRAST_FACTOR = (0.2, 0.2)


def layer_seeds(seed: int, count: int) -> list:
    """One independent seed per random layer, all derived from the run's seed, so no two layers draw alike."""
    return [int(child.generate_state(1)[0] >> 1) for child in np.random.SeedSequence(seed).spawn(count)]


def augmentation(contrast: bool = False, seed: int = 42, value_range=None):
    """The report's augmentation: horizontal flip and rotation 0.2, optionally random contrast.

    Each layer draws from its own seed stream. Contrast clips to value_range, the range of the images it
    receives, which the caller must name: (0, 1) after the fused stem's rescaling, (0, 255) before.
    """
    import keras

    if contrast and value_range is None:
        raise ValueError("random contrast needs the value_range of the images it receives, e.g. (0, 1) or (0, 255)")
    flip_seed, rotation_seed, contrast_seed = layer_seeds(seed, 3)
    layers = [keras.layers.RandomFlip("horizontal", seed=flip_seed),
              keras.layers.RandomRotation(0.2, seed=rotation_seed)]
    if contrast:
        layers.append(keras.layers.RandomContrast(CONTRAST_FACTOR, value_range=value_range, seed=contrast_seed))
    return keras.Sequential(layers, name="augmentation")
