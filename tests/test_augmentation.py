"""The report's augmentation against known answers: every layer draws on its own, contrast goes both ways
and clips to the inputs' range, a dot right of centre lands above centre half the time, resume stays exact."""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from cxrlib.science.data.pipeline import array_dataset, steps_per_epoch
from cxrlib.science.models import fused_net
from cxrlib.science.models.augment import augmentation, layer_seeds

DRAWS = 2000


def draws(layer, key: str) -> np.ndarray:
    """One batch of DRAWS random transformations of a fresh layer, as numpy."""
    batch = np.zeros((DRAWS, 8, 8, 1), np.float32)
    return np.ravel(keras.ops.convert_to_numpy(layer.get_random_transformation(batch, training=True)[key]))


def test_contrast_asks_for_the_range_of_its_inputs():
    with pytest.raises(ValueError, match="value_range"):
        augmentation(contrast=True)
    assert [type(layer).__name__ for layer in augmentation().layers] == ["RandomFlip", "RandomRotation"]


def test_each_layer_gets_its_own_seed():
    seeds = layer_seeds(42, 3)
    assert len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds)
    assert layer_seeds(42, 3) == seeds and layer_seeds(43, 3) != seeds  # derived from the run's seed only


def test_flip_and_rotation_draw_independently():
    # independent draws: P(flipped) * P(negative angle) = 0.5 * 0.5; one shared stream gives 0.5
    flip, rotation = augmentation().layers
    flipped, angles = draws(flip, "flips").astype(bool), draws(rotation, "angle")
    assert abs(np.mean(flipped & (angles < 0)) - 0.25) <= 0.03
    assert abs(np.mean(flipped) - 0.5) <= 0.03 and abs(np.mean(angles < 0) - 0.5) <= 0.03


def test_contrast_factors_fall_on_both_sides_of_one():
    contrast = augmentation(contrast=True, value_range=(0.0, 1.0)).layers[2]
    factors = draws(contrast, "contrast_factor")
    assert factors.min() >= 0.8 - 1e-6 and factors.max() <= 1.2 + 1e-6
    assert (factors < 0.95).mean() > 0.2 and (factors > 1.05).mean() > 0.2
    angles = draws(augmentation(contrast=True, value_range=(0.0, 1.0)).layers[1], "angle")
    assert abs(np.corrcoef(angles, factors)[0, 1]) < 0.1  # not a function of the angle


def fused_augmentation():
    """The augmentation block inside an augmented fused net, as the grid's yes_da variants build it."""
    model = fused_net(64, 57, resizer=False, augment=True, contrast=True, dense_units=8)
    return model.get_layer("augmentation")


def test_contrast_works_on_the_range_the_fused_net_feeds_it():
    block = fused_augmentation()
    contrast = block.layers[-1]
    assert isinstance(contrast, keras.layers.RandomContrast) and tuple(contrast.value_range) == (0.0, 1.0)
    # half black, half white images in [0, 1]: raised contrast must clip at 1, lowered contrast stays inside
    images = np.zeros((256, 16, 16, 1), np.float32)
    images[:, :, 8:] = 1.0
    out = keras.ops.convert_to_numpy(contrast(images, training=True))
    assert out.max() <= 1.0 and out.min() >= 0.0
    assert (out.max(axis=(1, 2, 3)) < 1.0 - 1e-3).mean() > 0.2  # some factors lowered the contrast


def dot_rows(size: int = 65, offset: int = 8, calls: int = 8, batch: int = 50) -> np.ndarray:
    """Row of a dot drawn offset pixels right of centre, after calls x batch passes through the augmentation,
    minus the centre's row (Keras rotates about pixel (size - 1) / 2; the reflected fill cannot copy the dot)."""
    keras.utils.set_random_seed(0)
    block = augmentation(contrast=True, value_range=(0.0, 1.0))
    image = np.zeros((size, size, 1), np.float32)
    centre = size // 2
    image[centre - 1:centre + 2, centre + offset - 1:centre + offset + 2] = 1.0
    rows = []
    for _ in range(calls):
        out = keras.ops.convert_to_numpy(block(np.repeat(image[None], batch, axis=0), training=True))[..., 0]
        for one in out:
            ys, _ = np.nonzero(one >= 0.5 * one.max())
            rows.append(ys.mean())
    return np.array(rows) - (size - 1) / 2


def test_a_dot_right_of_centre_lands_above_centre_half_the_time():
    # with one shared stream a flip always came with a negative angle, and the dot always rose
    rows = dot_rows()
    assert len(rows) == 400
    assert abs(np.mean(rows < 0) - 0.5) <= 0.05


def tiny_augmented_model():
    """Augmentation with contrast, then a dense layer: a resumed run must restore the layers' random states."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = augmentation(contrast=True, value_range=(0.0, 1.0))(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def fit_augmented(folder, crash_at=None):
    """Train the tiny augmented model for 5 epochs, optionally crashing at the start of one."""
    from cxrlib.science.training import train

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 8, 8, 1)).astype("float32")
    y = np.arange(32) % 4
    x[np.arange(32), y, y, 0] = 1.0  # the class is where a bright pixel sits
    train_data = lambda start: (array_dataset(x, y, 8, shuffle=True, seed=3, start_epoch=start),  # noqa: E731
                                steps_per_epoch(len(x), 8))

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == crash_at:
                raise KeyboardInterrupt("simulated crash")

    return train(tiny_augmented_model(), train_data, array_dataset(x, y, 8), folder, epochs=5, patience=10,
                 learning_rate=1e-2, identity="augmented", extra_callbacks=[Crash()])


def test_augmented_training_resumes_bit_for_bit(tmp_path, monkeypatch):
    from cxrlib.science.training import Backup

    monkeypatch.setattr(Backup, "SPACING", 0)
    whole, whole_history = fit_augmented(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit_augmented(tmp_path / "resumed", crash_at=3)
    resumed, resumed_history = fit_augmented(tmp_path / "resumed")
    pd.testing.assert_frame_equal(whole_history, resumed_history)
    assert all(np.array_equal(a, b) for a, b in zip(whole.get_weights(), resumed.get_weights()))
