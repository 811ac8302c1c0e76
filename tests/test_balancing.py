"""Balancing the classes on validation: known answers at the edges, the saved model decides on it, and
nothing of the test split enters it."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.science import calibration


def mean_probabilities(logits, offsets):
    return calibration.softmax(np.asarray(logits, float) + offsets).mean(axis=0)


def test_balanced_logits_need_no_offset():
    logits = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]]))
    np.testing.assert_allclose(calibration.balancing_offsets(logits), 0.0, atol=1e-12)


def test_a_constant_prediction_becomes_a_tie():
    offsets = calibration.balancing_offsets([[3.0, 1.0, 0.0, -2.0]] * 5)
    np.testing.assert_allclose(offsets, [-2.5, -0.5, 0.5, 2.5], atol=1e-9)


def test_every_class_ends_with_the_same_mean_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (200, 4)) + [3.0, 0.0, -1.0, -2.0]  # leaning hard to the first class
    offsets = calibration.balancing_offsets(logits)
    np.testing.assert_allclose(mean_probabilities(logits, offsets), 0.25, atol=1e-8)
    assert np.isclose(offsets.sum(), 0.0)  # centred: softmax ignores a common shift
    assert (np.argmax(logits + offsets, axis=1) == 3).any()  # the rarest class is named again


def test_saturated_probabilities_stay_exact():
    """Logits whose float64 softmax underflows to exactly 0 and 1 give the exact answer, not log(0)."""
    certain = 800.0 * np.eye(4)
    np.testing.assert_allclose(calibration.balancing_offsets(certain), 0.0, atol=1e-9)
    offsets = calibration.balancing_offsets([[800.0, 0.0, 0.0, 0.0]] * 3)
    np.testing.assert_allclose(offsets, [-600.0, 200.0, 200.0, 200.0], atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.zeros(4)])
def test_no_rows_is_refused_in_one_line(bad):
    with pytest.raises(ValueError, match="non-empty"):
        calibration.balancing_offsets(bad)


def test_the_classifier_biases_carry_the_offsets_fitted_on_validation_only():
    import keras

    from cxrlib.science import training

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="classifier")(inputs))
    model.layers[-1].set_weights([np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], np.float32),
                                  np.array([2.0, 0, 0, 0], np.float32)])
    val = np.random.default_rng(1).normal(0, 1, (64, 2)).astype(np.float32)
    _, before, _ = training.predict_with_logits(model, val)
    offsets = training.balance(model, val)
    np.testing.assert_allclose(offsets, calibration.balancing_offsets(before), rtol=1e-6)
    probs, _, _ = training.predict_with_logits(model, val)
    np.testing.assert_allclose(probs.mean(axis=0), 0.25, atol=1e-5)
