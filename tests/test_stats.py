"""Known answers for the patient-clustered bootstrap (cxrlib.science.stats)."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrlib.science import stats
from cxrlib.science.metrics import metrics_row


def random_model(n=60, seed=0, skill=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    logits = rng.normal(size=(n, 4)) + skill * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_unit_weights_give_the_metrics_rows_values():
    y, probs = random_model()
    row = metrics_row("m", y, probs).iloc[0]
    found = stats.weighted_metrics(y, probs, np.ones((1, len(y))))
    for metric in stats.METRICS:
        assert found[metric][0] == pytest.approx(row[metric], abs=1e-12), metric


def test_weights_equal_repeating_the_images():
    y, probs = random_model(n=24, seed=1)
    weights = np.random.default_rng(2).integers(0, 3, size=len(y)).astype(float)
    weights[:4] = 1  # every class present
    repeated = np.repeat(np.arange(len(y)), weights.astype(int))
    found = stats.weighted_metrics(y, probs, weights[None])
    row = metrics_row("m", y[repeated], probs[repeated]).iloc[0]
    for metric in ("Accuracy", "F1-macro", "ROC AUC", "FNFR"):
        assert found[metric][0] == pytest.approx(row[metric], abs=1e-12), metric


def test_weighted_auc_counts_ties_one_half_as_scikit_learn():
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.3])
    positive = np.array([0, 1, 0, 1, 1, 0], bool)
    assert stats.weighted_auc(scores, positive, np.ones((1, 6)))[0] == pytest.approx(roc_auc_score(positive, scores))
    assert stats.weighted_auc(np.full(6, 0.25), positive, np.ones((1, 6)))[0] == 0.5  # a constant scorer


def test_a_class_drawn_empty_is_undefined_and_counted():
    y = np.array([0, 0, 1, 1])
    probs = np.eye(4)[[0, 0, 1, 1]]
    boot = stats.Bootstrap(y, patients=["a", "a", "b", "b"], n=200, seed=0)
    auc = boot.interval(probs, "ROC AUC")
    assert auc.empty > 0  # resamples of one patient hold one class: no ROC curve
    assert auc.estimate == 1.0 and auc.low == 1.0 and auc.high == 1.0


def test_one_patient_is_one_unit():
    y, probs = random_model(n=40)
    one = stats.Bootstrap(y, patients=np.zeros(len(y)), n=100, seed=0)
    accuracy = one.interval(probs, "Accuracy")
    assert accuracy.low == accuracy.high == accuracy.estimate  # nothing to resample: no spread


def test_a_model_against_itself_differs_by_exactly_zero():
    y, probs = random_model()
    boot = stats.Bootstrap(y, patients=np.arange(len(y)) // 2, n=300, seed=0)
    same = boot.difference(probs, probs.copy())
    assert same == stats.Interval(0.0, 0.0, 0.0, 0) and same.sign == 0


def test_a_clearly_better_model_reads_above_and_a_noisy_pair_reads_neither():
    y, good = random_model(n=200, seed=0, skill=4.0)
    _, bad = random_model(n=200, seed=1, skill=0.0)
    boot = stats.Bootstrap(y, patients=np.arange(len(y)), n=500, seed=0)
    assert boot.difference(good, bad).sign == 1
    assert boot.difference(bad, good).sign == -1
    _, other_bad = random_model(n=200, seed=2, skill=0.0)
    assert boot.difference(bad, other_bad).sign == 0


def test_chance_is_held_by_a_random_model_and_not_by_a_good_one():
    y, good = random_model(n=200, seed=0, skill=4.0)
    _, guess = random_model(n=200, seed=5, skill=0.0)
    boot = stats.Bootstrap(y, patients=np.arange(len(y)), n=500, seed=0)
    assert boot.interval(guess, "ROC AUC").holds(0.5)
    assert not boot.interval(good, "ROC AUC").holds(0.5)


def test_against_a_published_number_shifts_the_models_own_interval():
    y, probs = random_model()
    boot = stats.Bootstrap(y, patients=np.arange(len(y)), n=300, seed=0)
    own, shifted = boot.interval(probs, "F1-macro"), boot.against(probs, "F1-macro", 0.7)
    assert shifted.low == pytest.approx(own.low - 0.7) and shifted.high == pytest.approx(own.high - 0.7)


def test_the_interval_covers_the_truth_about_as_often_as_it_says():
    """Accuracy of a coin that is right with p = 0.6, 40 patients of 2 correlated images each: ~95% coverage."""
    misses, runs = 0, 200
    for run in range(runs):
        rng = np.random.default_rng(run)
        right = np.repeat(rng.random(40) < 0.6, 2)  # a patient's two images share the outcome
        y = np.zeros(80, int)
        probs = np.where(right[:, None], np.eye(4)[0], np.eye(4)[1])
        boot = stats.Bootstrap(y, patients=np.repeat(np.arange(40), 2), n=300, seed=run)
        misses += not boot.interval(probs, "Accuracy").holds(0.6)
    assert 2 <= misses <= 22  # 5% of 200 is 10; a binomial 99.9% band


def test_patient_resamples_are_whole_patients_and_seeded():
    patients = np.array([1, 1, 1, 2, 3, 3])
    weights = stats.patient_resamples(patients, n=50, seed=3)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 4] == weights[:, 5]).all()
    assert (weights.sum(axis=1) > 0).all()
    assert (weights == stats.patient_resamples(patients, n=50, seed=3)).all()


def test_resolvable_difference_and_patients_needed():
    assert stats.resolvable_difference(0.05) == pytest.approx((1.959964 + 0.841621) * 0.05, rel=1e-5)
    needed = stats.patients_needed(0.05, patients=60, difference=stats.resolvable_difference(0.05) / 2)
    assert needed == pytest.approx(240)  # half the difference: four times the patients
    assert math.isinf(stats.patients_needed(0.05, 60, 0.0))


def test_bootstrap_refuses_mismatched_patients():
    with pytest.raises(ValueError, match="3 patients for 2 labels"):
        stats.Bootstrap([0, 1], patients=[1, 2, 3])


def test_a_perfect_model_has_a_point_interval():
    y = np.arange(12) % 4
    boot = stats.Bootstrap(y, patients=np.arange(12) // 3, n=50)
    for metric in ("Accuracy", "F1-macro", "ROC AUC"):
        found = boot.interval(np.eye(4)[y], metric)
        assert found.low == found.high == 1.0, metric


def test_resamples_draw_patients_not_images():
    """Two patients, one always right (10 images), one always wrong: accuracy can only be 0, 0.5 or 1."""
    probs = np.eye(4)[np.r_[np.zeros(10, int), np.ones(10, int)]]
    boot = stats.Bootstrap(np.zeros(20, int), patients=np.repeat([1, 2], 10), n=400, seed=0)
    values = boot.values(probs)[1]["Accuracy"]
    assert set(np.unique(values)) == {0.0, 0.5, 1.0}
    assert boot.interval(probs, "Accuracy")[1:3] == (0.0, 1.0)


def test_a_class_missing_from_a_resample_leaves_its_f1_undefined_and_counted():
    """One patient holds the only Atelectasis image: about (1 - 1/4)^4 of resamples miss it."""
    y = np.r_[np.tile([0, 1, 2], 3), 3]
    boot = stats.Bootstrap(y, patients=np.r_[np.repeat([1, 2, 3], 3), 4], n=400, seed=0)
    assert abs(boot.interval(np.eye(4)[y], "F1-Atelectasis").empty / 400 - (3 / 4) ** 4) < 0.07
