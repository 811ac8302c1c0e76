"""Balancing the classes on validation: each class's mean probability is brought to the share of the prior the
model was trained for (the validation labels' shares, or equal shares under class weights). Known answers at the
edges, a calibrated model left as good as it was, the saved model decides on it, and nothing of the test split
enters it."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cxrlib.science import calibration

SHARES = np.array([0.41, 0.23, 0.28, 0.08])  # the cpu validation split's class shares


def mean_probabilities(logits, offsets):
    return calibration.softmax(np.asarray(logits, float) + offsets).mean(axis=0)


def calibrated(n: int, seed: int, separation: float = 2.5):
    """(labels, logits) of a calibrated model: labels drawn from softmax(logits), classes in SHARES' proportions."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, separation, (n, 4)) + np.log(SHARES)
    probs = calibration.softmax(logits)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return labels, logits


def macro_f1(labels, logits):
    return f1_score(labels, np.argmax(logits, axis=1), average="macro")


def test_logits_that_already_match_the_shares_need_no_offset():
    logits = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]]))
    np.testing.assert_allclose(calibration.balancing_offsets(logits, [0, 1, 2, 3]), 0.0, atol=1e-12)


def test_a_constant_prediction_becomes_the_validation_shares():
    labels = [0, 0, 0, 1, 2, 2, 3, 0]  # shares 1/2, 1/8, 1/4, 1/8
    offsets = calibration.balancing_offsets([[3.0, 1.0, 0.0, -2.0]] * len(labels), labels)
    np.testing.assert_allclose(calibration.softmax(np.array([[3.0, 1.0, 0.0, -2.0]]) + offsets)[0],
                               [1 / 2, 1 / 8, 1 / 4, 1 / 8], atol=1e-9)
    assert np.isclose(offsets.sum(), 0.0)  # centred: softmax ignores a common shift


def test_each_class_ends_with_its_share_of_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (200, 4)) + [3.0, 0.0, -1.0, -2.0]  # leaning hard to the first class
    labels = rng.choice(4, size=200, p=SHARES)
    offsets = calibration.balancing_offsets(logits, labels)
    np.testing.assert_allclose(mean_probabilities(logits, offsets), np.bincount(labels) / 200, atol=1e-8)


def test_the_offsets_minimise_the_validation_log_loss_over_bias_shifts():
    labels, logits = calibrated(2000, seed=1)
    leaning = logits + [1.5, -0.5, 0.0, -1.0]
    offsets = calibration.balancing_offsets(leaning, labels)
    best = calibration.negative_log_likelihood(labels, leaning + offsets)
    assert best < calibration.negative_log_likelihood(labels, leaning)
    for nudge in np.eye(4) * 0.05:
        assert best < calibration.negative_log_likelihood(labels, leaning + offsets + nudge)


def test_a_calibrated_model_keeps_its_macro_f1_and_log_loss_on_test():
    """Known answer: fitted on one draw and scored on another, the correction costs a calibrated model at most 0.01
    of macro F1 against plain argmax and does not raise its log-loss; giving every class the same mean
    probability (the old target) costs far more of both."""
    y_val, z_val = calibrated(20_000, seed=2)
    y_test, z_test = calibrated(20_000, seed=3)
    shifted = z_test + calibration.balancing_offsets(z_val, y_val)
    assert macro_f1(y_test, shifted) >= macro_f1(y_test, z_test) - 0.01
    before = calibration.negative_log_likelihood(y_test, z_test)
    assert calibration.negative_log_likelihood(y_test, shifted) <= before + 1e-3
    uniform = z_test + calibration.balancing_offsets(z_val, np.arange(len(y_val)) % 4)  # equal shares
    assert calibration.negative_log_likelihood(y_test, uniform) > before + 0.05
    assert macro_f1(y_test, uniform) < macro_f1(y_test, z_test) - 0.02


def test_a_net_leaning_to_the_majority_names_the_rare_class_again():
    """Trained under class weights, then shifted by a constant: the correction brings back the rare class's share."""
    y_val, z_val = calibrated(5_000, seed=4)
    leaning = z_val + [4.0, 0.0, 0.0, -4.0]
    offsets = calibration.balancing_offsets(leaning, y_val)
    assert (np.argmax(leaning, axis=1) == 3).mean() < 0.005
    assert (np.argmax(leaning + offsets, axis=1) == 3).mean() > 0.1


def test_saturated_probabilities_stay_exact():
    """Logits whose float64 softmax underflows to exactly 0 and 1 give the exact answer, not log(0)."""
    certain = 800.0 * np.eye(4)
    np.testing.assert_allclose(calibration.balancing_offsets(certain, [0, 1, 2, 3]), 0.0, atol=1e-9)
    offsets = calibration.balancing_offsets([[800.0, 0.0, 0.0, 0.0]] * 4, [0, 1, 2, 3])
    np.testing.assert_allclose(offsets, [-600.0, 200.0, 200.0, 200.0], atol=1e-6)


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros((0, 4)), [], "non-empty"), (np.zeros(4), [0], "non-empty"),
    (np.zeros((3, 4)), [0, 1], "one class per row"),
    (np.zeros((3, 4)), [0, 1, 2], r"every class needs a label.*\[1, 1, 1, 0\]")])
def test_bad_inputs_are_refused_in_one_line(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration.balancing_offsets(logits, labels)


def test_the_classifier_biases_carry_the_offsets_fitted_on_validation_only():
    import keras

    from cxrlib.science import training

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="classifier")(inputs))
    model.layers[-1].set_weights([np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], np.float32),
                                  np.array([2.0, 0, 0, 0], np.float32)])
    rng = np.random.default_rng(1)
    val, labels = rng.normal(0, 1, (64, 2)).astype(np.float32), np.arange(64) % 4
    labels[:20] = 0  # No Finding the largest class
    _, before, _ = training.predict_with_logits(model, val)
    offsets = training.balance(model, val, labels)
    np.testing.assert_allclose(offsets, calibration.balancing_offsets(before, labels), rtol=1e-6)
    probs, _, _ = training.predict_with_logits(model, val)
    np.testing.assert_allclose(probs.mean(axis=0), np.bincount(labels) / 64, atol=1e-5)


def test_a_class_weighted_model_keeps_its_macro_f1_under_equal_shares():
    """Known answer for class weights: a model calibrated to the balanced prior they train for is left (nearly) as
    it was by equal target shares: offsets near zero, at most 0.01 of macro F1 against plain argmax."""
    y_val, z_val = calibrated(20_000, seed=5)
    y_test, z_test = calibrated(20_000, seed=6)
    weighted_val, weighted_test = z_val - np.log(SHARES), z_test - np.log(SHARES)  # what class weights learn
    offsets = calibration.balancing_offsets(weighted_val, y_val, shares=np.full(4, 0.25))
    assert np.abs(offsets).max() < 0.05
    assert macro_f1(y_test, weighted_test + offsets) >= macro_f1(y_test, weighted_test) - 0.01
    assert calibration.negative_log_likelihood(y_test, weighted_test + offsets) <= \
        calibration.negative_log_likelihood(y_test, weighted_test) + 0.005


def test_balance_under_class_weights_gives_every_class_the_same_mean_probability():
    import keras

    from cxrlib.science import training

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="classifier")(inputs))
    val = np.random.default_rng(2).normal(0, 1, (64, 2)).astype(np.float32)
    labels = np.r_[np.zeros(40, int), np.arange(24) % 4]
    training.balance(model, val, labels, class_weight="balanced")
    probs, _, _ = training.predict_with_logits(model, val)
    np.testing.assert_allclose(probs.mean(axis=0), 0.25, atol=1e-5)
