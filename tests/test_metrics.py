"""Each metric against a small example worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cxrlib.present import figures
from cxrlib.science import metrics

# true: NF, Eff, Inf, Atel, Eff, Inf ; predicted: NF, Eff, NF, Atel, Inf, Inf
Y_TRUE = np.array([0, 1, 2, 3, 1, 2])
PROBS = np.array([
    [0.7, 0.1, 0.1, 0.1],
    [0.1, 0.6, 0.2, 0.1],
    [0.5, 0.1, 0.3, 0.1],
    [0.1, 0.1, 0.1, 0.7],
    [0.1, 0.3, 0.5, 0.1],
    [0.2, 0.1, 0.6, 0.1],
])
Y_PRED = PROBS.argmax(axis=1)


def test_accuracy():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)


def test_cross_entropy():
    expected = -np.mean(np.log([0.7, 0.6, 0.3, 0.7, 0.3, 0.6]))
    assert metrics.cross_entropy(Y_TRUE, PROBS) == pytest.approx(expected)


def test_f1_per_class_and_macro():
    # NF: tp1 fp1 fn0 -> 2/3; Eff: tp1 fp0 fn1 -> 2/3; Inf: tp1 fp1 fn1 -> 1/2; Atel: 1
    expected = [2 / 3, 2 / 3, 1 / 2, 1.0]
    row = metrics.metrics_row("m", Y_TRUE, PROBS).iloc[0]
    assert row[metrics.F1_COLUMNS].tolist() == pytest.approx(expected)
    assert metrics.macro_f1(Y_TRUE, Y_PRED) == pytest.approx(np.mean(expected)) == pytest.approx(row["F1-macro"])


def test_false_no_finding_rate():
    # five diseased images, one of them (an infiltration) called No Finding
    assert metrics.metrics_row("m", Y_TRUE, PROBS).loc["m", "FNFR"] == pytest.approx(1 / 5)
    assert math.isnan(metrics.metrics_row("m", [0, 0], np.eye(4)[[0, 1]]).loc["m", "FNFR"])


def test_macro_roc_auc_one_vs_rest():
    # No Finding scores: positives {0.7}; negatives {0.1,0.5,0.1,0.1,0.2}: all below -> AUC 1
    # Effusion: positives {0.6,0.3}; negatives {0.1,0.1,0.1,0.1}: AUC 1
    # Infiltration: positives {0.3,0.6}; negatives {0.1,0.2,0.1,0.5}: pairs won 3+4=7 of 8 -> 0.875
    # Atelectasis: positive {0.7} above all -> 1
    assert metrics.metrics_row("m", Y_TRUE, PROBS).loc["m", "ROC AUC"] == pytest.approx((1 + 1 + 0.875 + 1) / 4)


def test_metrics_row_has_report_columns():
    row = metrics.metrics_row("m", Y_TRUE, PROBS, seconds=1.5)
    assert list(row.index) == ["m"]
    assert row.loc["m", "Accuracy"] == pytest.approx(4 / 6)
    assert row.loc["m", "Inference time (s)"] == 1.5
    assert row.loc["m", "F1-Atelectasis"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        metrics.metrics_row("bad", Y_TRUE, PROBS[:, :3])


def test_plots_have_titles_and_axes():
    ax = figures.plot_confusion(Y_TRUE, Y_PRED, "cm")
    assert ax.get_title() == "cm" and ax.get_xlabel() == "predicted class"
    ax = figures.plot_class_report(Y_TRUE, Y_PRED, "report")
    assert ax.get_title() == "report" and ax.get_ylabel() == "score"


def test_macro_f1_and_auc_average_over_the_same_classes():
    # only No Finding and Effusion occur; both are predicted perfectly
    y_true = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0], [0.1, 0.9, 0, 0], [0.3, 0.7, 0, 0]])
    assert metrics.present_classes(y_true) == [0, 1]
    assert metrics.macro_f1(y_true, probs.argmax(axis=1)) == pytest.approx(1.0)  # not 0.5: absent classes skipped
    assert metrics.metrics_row("m", y_true, probs).loc["m", "ROC AUC"] == pytest.approx(1.0)
    # a prediction of an absent class still costs the present class its recall
    assert metrics.macro_f1(y_true, np.array([0, 0, 1, 3])) == pytest.approx((1 + 2 / 3) / 2)
