"""Calibration against known answers: equal-mass bins that keep ties together, ECE by hand, and temperature
scaling fitted on logits, recovering a known sharpening, on one set and checked on another."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.present import figures
from cxrlib.present.labels import temperature_text, worded_temperatures
from cxrlib.science import calibration


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, seed: int, sharpness: float = 3.0):
    """Labels drawn from softmax(z) (so softmax(z) is calibrated), and a model's logits sharpness * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, 4))
    truth = softmax(z)
    labels = np.array([rng.choice(4, p=p) for p in truth])
    return labels, sharpness * z, truth


def test_equal_mass_bins_hold_the_same_count():
    index = calibration.equal_mass_bins(np.random.default_rng(0).random(150), bins=15)
    assert np.bincount(index).tolist() == [10] * 15


def test_tied_confidences_share_one_bin_in_any_row_order():
    # 100 rows all at confidence 0.5, 50 of them right: the true ECE is 0 (the old code gave 0.47 or 0.16)
    probs = np.tile([0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3], (100, 1))
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    rng = np.random.default_rng(0)
    for order in [np.arange(100), np.arange(100)[::-1], *(rng.permutation(100) for _ in range(10))]:
        assert calibration.expected_calibration_error(labels[order], probs[order]) == pytest.approx(0, abs=1e-12)
        assert len(np.unique(calibration.equal_mass_bins(probs[order].max(axis=1)))) == 1


def test_ece_by_hand():
    # two bins of two: confidences 0.6, 0.6 (one right) and 0.9, 0.9 (both right): |0.6-0.5| and |0.9-1|
    probs = np.array([[0.6, 0.4, 0, 0], [0.6, 0.4, 0, 0], [0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0]])
    labels = np.array([0, 1, 0, 0])
    assert calibration.expected_calibration_error(labels, probs, bins=2) == pytest.approx(0.1)


def test_log_probabilities_stay_exact_where_probabilities_underflow():
    logits = np.array([[0.0, -800.0, 5.0, 1.0]])
    with np.errstate(divide="ignore"):
        assert np.log(softmax(logits))[0, 1] == -np.inf  # what a saved probability can give back
    exact = -805.0 - np.log1p(np.exp(-5) + np.exp(-4))
    assert calibration.log_softmax(logits)[0, 1] == pytest.approx(exact, rel=1e-12)
    assert calibration.negative_log_likelihood([1], logits) == pytest.approx(-exact, rel=1e-12)


@pytest.mark.parametrize("sharpness", [3, 20, 40])
def test_temperature_fitted_on_logits_recovers_the_sharpening(sharpness):
    # clipped log-probabilities gave T = 12.7 for s = 20 and 14.7 for s = 40
    labels, logits, _ = overconfident(3000, seed=0, sharpness=sharpness)
    fit = calibration.fit_temperature(labels, logits)
    assert fit.temperature == pytest.approx(sharpness, rel=0.05) and not fit.at_bound


def test_a_fit_at_the_end_of_the_search_says_so():
    labels = np.arange(40) % 4
    right = 10 * np.eye(4)[labels]  # every image right: sharper is always better, T runs to the lower end
    low = calibration.fit_temperature(labels, right)
    assert low.at_bound and low.temperature == pytest.approx(calibration.SEARCH[0], rel=0.01)
    assert temperature_text(*low) == "≤ 0.01 (search bound, not a fit)"
    wrong = 10 * np.eye(4)[(labels + 1) % 4]  # every image wrong: flatter is always better, T runs to the upper end
    high = calibration.fit_temperature(labels, wrong)
    assert high.at_bound and temperature_text(*high) == "≥ 100 (search bound, not a fit)"
    table = calibration.temperature_table({"right": right, "wrong": wrong}, {"right": right, "wrong": wrong}, labels, labels)
    assert table["temperature"].tolist() == [low.temperature, high.temperature]
    assert worded_temperatures(table)["temperature (fitted on validation)"].tolist() == [
        temperature_text(*low), temperature_text(*high)]
    assert temperature_text(*calibration.fit_temperature(*overconfident(500, seed=3)[:2])).count("bound") == 0


def test_temperature_scaling_fitted_on_validation_fixes_an_overconfident_model():
    y_val, z_val, _ = overconfident(3000, seed=0)
    y_test, z_test, truth = overconfident(3000, seed=1)
    t = calibration.fit_temperature(y_val, z_val).temperature
    assert t == pytest.approx(3.0, rel=0.05)  # undoes the sharpening
    before = calibration.expected_calibration_error(y_test, calibration.softmax(z_test))
    after = calibration.expected_calibration_error(y_test, calibration.scale(z_test, t))
    assert after < before / 2 and after < 0.03
    # scaling never changes which class is predicted
    assert (calibration.scale(z_test, t).argmax(axis=1) == z_test.argmax(axis=1)).all()
    table = calibration.temperature_table({"m": z_val}, {"m": z_test}, y_val, y_test)
    assert table.loc["m", "ECE after"] == pytest.approx(after)
    assert table.loc["m", "log-loss after"] < table.loc["m", "log-loss before"]
    assert table.loc["m", "temperature"] == t and not table.loc["m", "at search bound"]
    assert worded_temperatures(table).loc["m", "temperature (fitted on validation)"] == f"{t:.3f}"


def test_reliability_diagram_has_labels():
    y, z, _ = overconfident(300, seed=2)
    fig = figures.plot_reliability({"m": softmax(z), "n": softmax(z / 2)}, y, "calibration")
    assert fig._suptitle.get_text() == "calibration"
    assert [ax.get_title().split("\n") for ax in fig.axes[:2]] == [
        ["m", f"ECE {calibration.expected_calibration_error(y, softmax(z)):.3f}"],
        ["n", f"ECE {calibration.expected_calibration_error(y, softmax(z / 2)):.3f}"]]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes[:1])


def test_the_table_flags_which_way_each_model_was_off_and_where_scaling_made_test_worse():
    """Known answers: a model three times too sharp on validation (T > 1, over-confident), one three times too flat
    (T < 1, under-confident), and one over-confident on validation only, calibrated on test, so that softening
    it makes the test log-loss worse."""
    from cxrlib.present.labels import OVERCONFIDENT, WORSE, temperature_reading, worded_temperatures

    y_val, z_val, _ = overconfident(3000, seed=0, sharpness=1.0)
    y_test, z_test, _ = overconfident(3000, seed=1, sharpness=1.0)
    val = {"sharp": 3 * z_val, "flat": z_val / 3, "sharp on validation only": 3 * z_val}
    test = {"sharp": 3 * z_test, "flat": z_test / 3, "sharp on validation only": z_test}
    table = calibration.temperature_table(val, test, y_val, y_test)
    shown = worded_temperatures(table)
    assert shown[OVERCONFIDENT].tolist() == [True, False, True] and shown[WORSE].tolist() == [False, False, True]
    assert table.loc["sharp on validation only", "log-loss after"] > table.loc["sharp on validation only", "log-loss before"]
    text = temperature_reading(table)
    assert text.startswith("Of the 3 fitted temperatures, 1 is below 1 (the model was under-confident on validation")
    assert "and 2 above 1 (over-confident: T > 1 softens them)" in text
    assert text.endswith("Scaling worsens the test log-loss of sharp on validation only; and the test ECE of sharp on "
                         "validation only: there, the temperature fitted on the validation set does not carry over to "
                         "the test set.")
    calm = temperature_reading(table.drop(index="sharp on validation only"))
    assert calm.endswith("Scaling raises neither test log-loss nor ECE for any model.")


def test_with_the_pages_resamples_a_worse_log_loss_is_one_its_interval_shows():
    """Known answers with the page's bootstrap: softening a model calibrated on test raises its log-loss by the
    interval on 3,000 images; a model scaled by a temperature of 1 changes nothing and is not named."""
    from cxrlib.present.labels import temperature_reading
    from cxrlib.science.stats import Bootstrap

    y_val, z_val, _ = overconfident(3000, seed=0, sharpness=1.0)
    y_test, z_test, _ = overconfident(3000, seed=1, sharpness=1.0)
    val, test = {"sharp on validation only": 3 * z_val, "calibrated": z_val}, {"sharp on validation only": z_test,
                                                                                "calibrated": z_test}
    table = calibration.temperature_table(val, test, y_val, y_test).assign(temperature=[3.0, 1.0])
    boot = Bootstrap(y_test, np.arange(3000), n=200)
    text = temperature_reading(table, boot, test)
    assert "the test log-loss of sharp on validation only (by its interval on 3,000 test images from 3,000 patients)" \
        in text
    assert "log-loss of calibrated" not in text and "log-loss of sharp on validation only, calibrated" not in text
