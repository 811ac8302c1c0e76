"""Calibration against known answers: equal-mass bins, ECE by hand, and temperature scaling of an
over-confident model fitted on one set and checked on another."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib import calibration


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, seed: int, sharpness: float = 3.0):
    """Labels drawn from softmax(z) (so softmax(z) is calibrated), and a model reporting softmax(3 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, 4))
    truth = softmax(z)
    labels = np.array([rng.choice(4, p=p) for p in truth])
    return labels, softmax(sharpness * z), truth


def test_equal_mass_bins_hold_the_same_count():
    index = calibration.equal_mass_bins(np.random.default_rng(0).random(150), bins=15)
    assert np.bincount(index).tolist() == [10] * 15


def test_ece_by_hand():
    # two bins of two: confidences 0.6, 0.6 (one right) and 0.9, 0.9 (both right): |0.6-0.5| and |0.9-1|
    probs = np.array([[0.6, 0.4, 0, 0], [0.6, 0.4, 0, 0], [0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0]])
    labels = np.array([0, 1, 0, 0])
    assert calibration.expected_calibration_error(labels, probs, bins=2) == pytest.approx(0.1)


def test_temperature_scaling_fitted_on_validation_fixes_an_overconfident_model():
    y_val, p_val, _ = overconfident(3000, seed=0)
    y_test, p_test, truth = overconfident(3000, seed=1)
    t = calibration.fit_temperature(y_val, p_val)
    assert t == pytest.approx(3.0, rel=0.15)  # undoes the sharpening
    before = calibration.expected_calibration_error(y_test, p_test)
    after = calibration.expected_calibration_error(y_test, calibration.scale(p_test, t))
    assert after < before / 2 and after < 0.03
    # scaling never changes which class is predicted
    assert (calibration.scale(p_test, t).argmax(axis=1) == p_test.argmax(axis=1)).all()
    table = calibration.temperature_table({"m": p_val}, {"m": p_test}, y_val, y_test)
    assert table.loc["m", "ECE after"] == pytest.approx(after)
    assert table.loc["m", "log-loss after"] < table.loc["m", "log-loss before"]


def test_reliability_diagram_has_labels():
    y, p, _ = overconfident(300, seed=2)
    fig = calibration.plot_reliability({"m": p}, y, "calibration")
    ax = fig.axes[0]
    assert ax.get_title() == "calibration" and "ECE" in ax.get_legend().get_texts()[1].get_text()
