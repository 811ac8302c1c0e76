"""Known answers, worked by hand, for every kind of number the book shows: the metrics row, the classification
report, the reliability bins, the dataset chapter's tables, the report's set sizes that the full profile's caps
give, and the check of Hyperband's trials. Pure functions on tiny inputs: a few seconds in all."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES
from cxrlib.core.manifest import profile_settings
from cxrlib.present import labels as label_words
from cxrlib.science import calibration, metrics

# --- a hand-made prediction table: two images per class; image i gives its predicted class 0.55 + 0.05 i and
# shares the rest equally, so no two scores tie (a tie would leave ROC AUC to the last bit of a softmax) ---
# NF1 -> NF, NF2 -> NF, Eff1 -> Eff, Eff2 -> NF (a costly miss), Inf1 -> Inf, Inf2 -> Eff, Atel1 -> Atel, Atel2 -> Inf
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 3, 3])
Y_PRED = np.array([0, 0, 1, 0, 2, 1, 3, 2])
TOP = 0.55 + 0.05 * np.arange(8)  # 0.55 ... 0.90; the other three classes get (1 - top) / 3: 0.15 ... 0.033


def peaked(predicted, top=0.7):
    """Rows with `top` (one number, or one per row) on the predicted class and the rest shared equally."""
    top = np.broadcast_to(np.asarray(top, float), (len(predicted),))
    probs = np.repeat(((1 - top) / 3)[:, None], 4, axis=1)
    probs[np.arange(len(predicted)), predicted] = top
    return probs


def hand_row(label: int, occurrence: int) -> np.ndarray:
    """The table's probabilities for the first (0) or second (1) image of a class, wherever it stands."""
    return PROBS[2 * label + occurrence]


PROBS = peaked(Y_PRED, TOP)
# By hand. Accuracy: 5 of 8 right.
ACCURACY = 5 / 8
# F1 = 2 tp / (2 tp + fp + fn). NF: tp 2, fp 1 (Eff2), fn 0 -> 4/5. Eff: tp 1, fp 1 (Inf2), fn 1 -> 1/2.
# Inf: tp 1, fp 1 (Atel2), fn 1 -> 1/2. Atel: tp 1, fp 0, fn 1 -> 2/3.
F1 = {"No Finding": 4 / 5, "Effusion": 1 / 2, "Infiltration": 1 / 2, "Atelectasis": 2 / 3}
# ROC AUC of one class against the rest: the share of the 2 x 6 (positive, negative) pairs ranked right.
# NF: positives 0.55, 0.60; negatives 0.70 (Eff2, called NF) and five below 0.12 -> (5 + 5) / 12.
# Eff: positives 0.65 (Eff1) and 0.10 (Eff2); negatives 0.80 (Inf2, called Eff), 0.15, 0.133, 0.083, 0.05, 0.033
#   -> 0.65 beats 5, 0.10 beats 3: 8 / 12.
# Inf: positives 0.75 and 0.067 (Inf2); negatives 0.90 (Atel2, called Inf), 0.15, 0.133, 0.117, 0.10, 0.05
#   -> 5 + 1: 6 / 12.  Atel: positives 0.85 and 0.033 (Atel2); negatives 0.15 ... 0.067 -> 6 + 0: 6 / 12.
AUC = (10 + 8 + 6 + 6) / 12 / 4  # = 0.625
# FNFR: six diseased images, one of them (Eff2) called No Finding.
FNFR = 1 / 6
# Loss: -mean log p(true class): 0.55, 0.60, 0.65, Eff2's 0.10, 0.75, Inf2's 0.2/3, 0.85, Atel2's 0.1/3.
LOSS = -float(np.mean(np.log([0.55, 0.60, 0.65, 0.10, 0.75, 0.2 / 3, 0.85, 0.1 / 3])))


def test_metrics_row_on_a_hand_made_prediction_table():
    row = metrics.metrics_row("hand", Y_TRUE, PROBS, seconds=2.5).loc["hand"]
    assert row["Accuracy"] == pytest.approx(ACCURACY)
    assert row["F1-macro"] == pytest.approx(sum(F1.values()) / 4)  # 0.616667
    assert row["ROC AUC"] == pytest.approx(0.625)
    assert row["FNFR"] == pytest.approx(FNFR)
    assert row["Loss"] == pytest.approx(LOSS)  # 1.3002
    assert row["Inference time (s)"] == 2.5
    for name, value in F1.items():
        assert row[f"F1-{name}"] == pytest.approx(value), name
    columns = metrics.GLOBAL_COLUMNS + metrics.F1_COLUMNS
    assert list(row.index[:len(columns)]) == columns
    shown = label_words.metrics_row("hand", Y_TRUE, PROBS).loc["hand"]  # the words beside the metrics
    assert shown[label_words.PREDICTED] == "all 4"


def test_metrics_row_ignores_the_order_of_the_rows():
    order = np.random.default_rng(0).permutation(len(Y_TRUE))
    pd.testing.assert_frame_equal(metrics.metrics_row("m", Y_TRUE[order], PROBS[order]),
                                  metrics.metrics_row("m", Y_TRUE, PROBS))


def test_class_report_by_hand():
    table = metrics.class_report(Y_TRUE, Y_PRED)
    assert list(table.index) == list(CLASSES)
    # precision = tp / predicted, recall = tp / true
    expected = pd.DataFrame({"precision": [2 / 3, 1 / 2, 1 / 2, 1.0], "recall": [1.0, 1 / 2, 1 / 2, 1 / 2],
                             "F1": [F1[c] for c in CLASSES], "support": [2, 2, 2, 2]}, index=list(CLASSES))
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    # a class never predicted: precision 0 (not NaN), recall 0
    none = metrics.class_report([0, 3], [0, 0])
    assert none.loc["Atelectasis"].tolist() == [0.0, 0.0, 0.0, 1]


def test_reliability_bins_by_hand():
    # six predictions, confidences 0.3 ... 0.9, right on the 2nd, 4th, 5th and 6th; three equal-mass bins of two
    confidence = np.array([0.3, 0.4, 0.5, 0.6, 0.8, 0.9])
    right = np.array([False, True, False, True, True, True])
    predicted = np.array([0, 1, 2, 3, 0, 1])
    probs = np.full((6, 4), 0.0)
    for i, (c, k) in enumerate(zip(confidence, predicted)):
        probs[i] = (1 - c) / 3
        probs[i, k] = c
    y_true = np.where(right, predicted, (predicted + 1) % 4)
    table = calibration.reliability(y_true, probs, bins=3)
    assert table.index.tolist() == [0, 1, 2]
    np.testing.assert_allclose(table["confidence"], [0.35, 0.55, 0.85])
    np.testing.assert_allclose(table["accuracy"], [0.5, 0.5, 1.0])
    assert table["count"].tolist() == [2, 2, 2]
    # ECE = (2 * 0.15 + 2 * 0.05 + 2 * 0.15) / 6
    assert calibration.expected_calibration_error(y_true, probs, bins=3) == pytest.approx(0.7 / 6)
    # the rows in another order give the same bins
    order = np.array([5, 0, 3, 1, 4, 2])
    pd.testing.assert_frame_equal(calibration.reliability(y_true[order], probs[order], bins=3), table)


def test_reliability_keeps_tied_confidences_in_one_bin():
    probs = peaked([0, 1, 2, 3], top=0.5)
    probs[3] = peaked([3], top=0.9)[0]
    table = calibration.reliability(np.array([0, 1, 0, 3]), probs, bins=2)
    # ranks of the first of each tie: 0, 0, 0, 3 -> bins 0, 0, 0, 1
    assert table["count"].tolist() == [3, 1]
    np.testing.assert_allclose(table["confidence"], [0.5, 0.9])
    np.testing.assert_allclose(table["accuracy"], [2 / 3, 1.0])


# --- the dataset chapter's tables on the tiny NIH folder (12 images per class, two per patient) ---

@pytest.fixture
def tiny_data(nih_folder, isolated):
    from cxrlib.machinery.inputs import load_data

    # per class 6 patients of 2 images; the midpoints of their shares of images, 1/12, 3/12 ... 11/12, deal 4
    # patients to train (< 0.6), 1 to val (< 0.8) and 1 to test
    return load_data(nih_folder, fractions=(0.6, 0.2, 0.2))


def test_patients_per_split_by_hand(tiny_data):
    from cxrlib.present.dataset import patients_per_split

    table = patients_per_split(tiny_data)
    assert table.index.tolist() == ["train", "val", "test"]
    assert table.to_dict("index") == {"train": {"images": 32, "patients": 16}, "val": {"images": 8, "patients": 4},
                                      "test": {"images": 8, "patients": 4}}


def test_overview_by_hand(tiny_data, nih_folder):
    from cxrlib.machinery.inputs import read_metadata
    from cxrlib.present.dataset import overview

    table = overview(tiny_data, read_metadata(nih_folder / "Data_Entry_2017.csv"))
    assert table.index.tolist() == [*CLASSES, "total"]
    # the folder: 12 rows of each class, 12 'Effusion|Infiltration' and 12 'Pneumonia'
    assert table["NIH, any label"].tolist() == [12, 24, 24, 12, 72]
    assert table["NIH, single label"].tolist() == [12, 12, 12, 12, 48]
    # the report's section 1.2: train + val + test per class (3240+360+400, 2279+283+314, ...)
    assert table["report (train+val+test)"].tolist() == [4000, 2876, 4000, 2997, 13_873]
    assert table["used here"].tolist() == [12, 12, 12, 12, 48]
    assert "NIH, any label" not in overview(tiny_data).columns  # without NIH's file: only the report and ours


def test_report_split_comparison_by_hand(tiny_data):
    from cxrlib.present.dataset import report_split_comparison

    table = report_split_comparison(tiny_data)
    assert table.columns.tolist() == [(s, w) for s in ("train", "val", "test") for w in ("report", "ours")]
    assert table.index.tolist() == list(CLASSES)
    assert table[("train", "report")].tolist() == [3240, 2279, 3240, 2384]
    assert table[("val", "report")].tolist() == [360, 283, 360, 289]
    assert table[("test", "report")].tolist() == [400, 314, 400, 324]
    assert table[("train", "ours")].tolist() == [8] * 4
    assert table[("val", "ours")].tolist() == table[("test", "ours")].tolist() == [2] * 4


# --- the full profile's settings imply the report's set sizes ---

def big_table(per_class: int = 5000) -> pd.DataFrame:
    """A label table (no images needed) of per_class single-image patients per class."""
    labels = np.repeat(np.arange(4), per_class)
    return pd.DataFrame({"Image Index": [f"{i:08d}_000.png" for i in range(len(labels))],
                         "Finding Labels": [CLASSES[k] for k in labels], "label": labels,
                         "Patient ID": np.arange(len(labels))})


def test_the_full_profile_gives_the_reports_set_sizes():
    from cxrlib.science.data.splits import apply_caps, split_counts, split_patients

    full = profile_settings("full")
    split = split_patients(big_table(), full["fractions"], full["seed"])
    # fractions 0.8 / 0.1 / 0.1 of each class's patients: 4000 / 500 / 500 of 5000
    assert split_counts(split).to_dict("list") == {"train": [4000] * 4, "val": [500] * 4, "test": [500] * 4}
    capped = split_counts(apply_caps(split, full["caps"], full["seed"], full["training_set"]))
    assert capped.to_dict("index") == {
        "No Finding": {"train": 3240, "val": 360, "test": 400}, "Effusion": {"train": 2279, "val": 283, "test": 314},
        "Infiltration": {"train": 3240, "val": 360, "test": 400},
        "Atelectasis": {"train": 2384, "val": 289, "test": 324}}
    assert capped.sum().tolist() == [11_143, 1_292, 1_438]  # the report's section 1.2
    first = split_counts(apply_caps(split, full["caps"], full["seed"], "first"))
    assert first["train"].sum() == 7_996 and first["val"].sum() == 1_292  # section 2.4's first training set


# --- the check that every Hyperband trial completed ---

def trial(status, message=None):
    return SimpleNamespace(status=status, message=message)


def test_check_trials_passes_only_when_every_trial_completed():
    from cxrlib.machinery.parallel import check_trials

    def tuner(*trials_):
        return SimpleNamespace(oracle=SimpleNamespace(trials={str(i): t for i, t in enumerate(trials_)}))

    assert check_trials(tuner(trial("COMPLETED"), trial("COMPLETED"))) is None
    with pytest.raises(RuntimeError, match=r"^1 Hyperband trial\(s\) failed: out of memory$"):
        check_trials(tuner(trial("COMPLETED"), trial("FAILED", "out of memory")))
    with pytest.raises(RuntimeError, match=r"^2 Hyperband trial\(s\) failed: first$"):
        check_trials(tuner(trial("INVALID", "first"), trial("FAILED", "second")))
    with pytest.raises(RuntimeError, match=r"^0 Hyperband trial\(s\) failed: no trial ran$"):
        check_trials(tuner())
