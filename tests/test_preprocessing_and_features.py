"""Otsu preprocessing, cached features and the Hyperband search space."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.machinery.features import extract
from cxrlib.science.otsu import otsu, otsu_steps


def test_otsu_keeps_pixels_darker_than_the_threshold():
    image = np.full((32, 32), 200, np.uint8)
    image[8:24, 8:24] = 40  # a dark square (a lung) on a bright background
    steps = otsu_steps(image)
    assert 40 / 255 < steps.threshold < 200 / 255
    assert steps.mask[16, 16] and not steps.mask[0, 0]
    assert otsu(image)[16, 16] == 40 and otsu(image)[0, 0] == 0


@pytest.mark.parametrize("level", [0, 7, 128, 255])
def test_a_flat_image_has_its_own_level_as_threshold_and_keeps_no_pixel(level):
    # no pixel is darker than any other: the threshold is the image's one grey level, the '<' mask is empty,
    # and the result is black (the report's mask keeps only pixels darker than the threshold)
    steps = otsu_steps(np.full((8, 8), level, np.uint8))
    assert steps.threshold == pytest.approx(level / 255)
    assert not steps.mask.any()
    np.testing.assert_array_equal(otsu(np.full((8, 8), level, np.uint8)), np.zeros((8, 8), np.uint8))


def test_features_are_computed_once(isolated):
    calls = []

    def extractor(batch):
        calls.append(len(batch))
        return batch.mean(axis=(1, 2))

    images = np.random.default_rng(0).integers(0, 255, (5, 4, 4), dtype=np.uint8)
    first = extract(extractor, images, "key", batch_size=2)
    again = extract(extractor, images, "key", batch_size=2)
    assert calls == [2, 2, 1] and first.shape == (5, 3)
    # the grey image copied into three channels: each channel's mean is the image's mean
    np.testing.assert_allclose(first, np.repeat(images.mean(axis=(1, 2))[:, None], 3, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(first, again)


def test_hyperband_search_space_builds_the_report_head():
    import keras_tuner

    from cxrlib.science.models import count_params
    from cxrlib.science.tuning import hypermodel

    hp = keras_tuner.HyperParameters()
    model = hypermodel(64, 64)(hp)
    assert {"layers", "dropout", "units", "learning_rate"} == set(hp.values)
    assert hp.values["units"] == 1024 and hp.values["layers"] == 1
    dense = 512 * 1024 + 1024 + 1024 * 4 + 4
    assert count_params(model)["total"] == 2_859_588 - 2052 + dense


def test_hyperband_search_completes_its_trials(tmp_path):
    import tensorflow as tf

    from cxrlib.machinery.parallel import search
    from cxrlib.science.tuning import best_hyperparameters, trials_table

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 4, 8))).batch(4)
    tuner = search(ds, ds, tmp_path, image_size=32, resize_to=32, max_epochs=2, seed=1)
    table = trials_table(tuner)
    assert len(table) >= 2 and (table["status"] == "COMPLETED").all()
    assert set(best_hyperparameters(tuner)) == {"layers", "dropout", "units", "learning_rate"}


def test_a_hyperband_search_repeats_exactly_whatever_ran_before_it(tmp_path):
    """Each trial seeds its own draws (tuning.trial_seed): two searches with the same seed, the second after other
    random draws of every kind, find the same validation losses, trial for trial."""
    import random

    import keras
    import tensorflow as tf

    from cxrlib.machinery.parallel import search
    from cxrlib.science.tuning import trials_table

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 4, 8))).batch(4)

    def losses(folder):
        table = trials_table(search(ds, ds, folder, image_size=32, resize_to=32, max_epochs=2, seed=1))
        return table.sort_values("trial")["val_loss"].tolist()

    first = losses(tmp_path / "a")
    random.random(), np.random.random(), keras.random.uniform((3,)), keras.utils.set_random_seed(123)
    assert losses(tmp_path / "b") == first
