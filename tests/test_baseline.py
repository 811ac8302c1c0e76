"""The labels-only baseline (cxrlib.science.baseline): known answers on synthetic label files, the patient
disjointness it refuses to break, and the trivial baselines every results table shows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from cxrlib.core.config import CLASSES, NO_FINDING
from cxrlib.core.errors import DataError
from cxrlib.present import baseline as page
from cxrlib.science import baseline
from cxrlib.science.metrics import macro_f1, metrics_row


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):  # OpenMP's threads on a shared machine wait on each other
        yield


def label_file(patients: int = 600, per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    """An NIH-like label file: every column the baseline reads, random fields, one class per patient."""
    rng = np.random.default_rng(seed)
    n = patients * per_patient
    patient = np.repeat(np.arange(1, patients + 1), per_patient)
    label = np.repeat(rng.integers(0, len(CLASSES), patients), per_patient)
    return pd.DataFrame({
        "Image Index": [f"{p:08d}_{i % per_patient:03d}.png" for i, p in enumerate(patient)],
        "Finding Labels": [CLASSES[k] for k in label], "Follow-up #": np.tile(np.arange(per_patient), patients),
        "Patient ID": patient, "Patient Age": rng.integers(1, 95, n), "Patient Gender": rng.choice(["M", "F"], n),
        "View Position": rng.choice(["PA", "AP"], n), "OriginalImage[Width": rng.integers(2000, 3000, n),
        "Height]": rng.integers(2000, 3000, n), "OriginalImagePixelSpacing[x": rng.choice([0.139, 0.143], n),
        "y]": rng.choice([0.139, 0.143], n), "label": label})


def ours_for(nih: pd.DataFrame, test_patients=(1, 2, 3), val_patients=(4, 5)) -> pd.DataFrame:
    """Our split table: a few of the file's patients in our test and validation splits, the rest not ours."""
    split = np.where(nih["Patient ID"].isin(test_patients), "test",
                     np.where(nih["Patient ID"].isin(val_patients), "val", "train"))
    return nih.assign(split=split)


def parts(nih: pd.DataFrame, X: pd.DataFrame, seed: int = 0) -> dict:
    split = baseline.split_rows(nih, ours_for(nih), seed)
    return {name: (X.loc[rows["Image Index"]], rows["label"].to_numpy()) for name, rows in split.groupby("split")}


def test_a_field_equal_to_the_label_gives_macro_f1_one():
    nih = label_file()
    X = baseline.features(nih).assign(age=nih["label"].to_numpy() * 10.0)
    found = parts(nih, X)
    _, model, _ = baseline.tune(*found["train"], *found["val"], seed=0)
    X_held, y_held = found["test"]
    assert macro_f1(y_held, model.predict(X_held.to_numpy(float))) == 1.0


def test_a_shuffled_field_gives_about_chance():
    nih = label_file(patients=1500, per_patient=2, seed=1)
    shuffled = np.random.default_rng(2).permutation(nih["label"].to_numpy() * 10.0)  # the label, its link broken
    found = parts(nih, baseline.features(nih).assign(age=shuffled))
    _, model, _ = baseline.tune(*found["train"], *found["val"], seed=0)
    probs, logits = baseline.probabilities(model, found["test"][0])
    y = found["test"][1]
    assert abs(metrics_row("m", y, probs).iloc[0]["ROC AUC"] - 0.5) < 0.05
    assert abs(macro_f1(y, probs.argmax(axis=1)) - 1 / len(CLASSES)) < 0.06
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), probs)  # logits are the scores


def test_the_baseline_never_trains_on_a_patient_we_score_on():
    nih = label_file(patients=200)
    ours = ours_for(nih, test_patients=range(1, 21), val_patients=range(21, 41))
    split = baseline.split_rows(nih, ours, seed=3)
    assert not set(split["Patient ID"]) & set(range(1, 41))
    assert len(split) == len(nih) - 40 * 3
    assert (split.groupby("Patient ID")["split"].nunique() == 1).all()
    assert set(split["split"]) == {"train", "val", "test"}
    with pytest.raises(DataError, match="2 patient.*of our validation or test split, e.g. 4, 5"):
        baseline.assert_apart(split.assign(**{"Patient ID": split["Patient ID"].replace({41: 4, 42: 5})}),
                              ours[ours["split"] != "train"])


def test_fields_read_from_the_label_file():
    nih = label_file(patients=3, per_patient=2).astype({"Patient Age": object})
    nih.loc[0, "Patient Age"], nih.loc[1, "Patient Age"] = 414, "45"
    nih.loc[2, ["Patient Gender", "View Position"]] = ["F", "AP"]
    nih.loc[3, ["Patient Gender", "View Position"]] = ["M", "PA"]
    nih.loc[5, "Patient ID"] = 1  # the patient's images count every row of the file
    X = baseline.features(nih)
    assert list(X.columns) == list(baseline.FEATURES) and list(X.index) == list(nih["Image Index"])
    assert list(page.features_table().index) == list(baseline.FEATURES)  # every field has its words
    assert np.isnan(X["age"].iloc[0]) and X["age"].iloc[1] == 45
    assert X[["sex", "AP view"]].iloc[2].tolist() == [0, 1] and X[["sex", "AP view"]].iloc[3].tolist() == [1, 0]
    assert X["patient's images"].tolist() == [3, 3, 2, 2, 1, 3]


def test_trivial_baselines_answer_the_majority_and_guess_in_the_training_shares():
    y_train = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    found = baseline.trivial_baselines(y_train, 4000, seed=7)
    assert list(found) == list(baseline.TRIVIAL)
    assert (found["always No Finding"].argmax(axis=1) == NO_FINDING).all()
    guess = found["random guess (training shares)"]
    assert guess.shape == (4000, len(CLASSES)) and (guess.sum(axis=1) == 1).all()
    assert np.allclose(np.bincount(guess.argmax(axis=1)) / 4000, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    assert (guess == baseline.trivial_baselines(y_train, 4000, seed=7)["random guess (training shares)"]).all()
    assert baseline.trivial_baselines([2, 2, 1], 1, seed=0)["always No Finding"].tolist() == [[0, 0, 1, 0]]


def test_the_grid_is_chosen_on_validation_first_of_equals():
    nih = label_file(patients=300)
    found = parts(nih, baseline.features(nih))
    same = {"first": {"max_leaf_nodes": 7}, "second": {"max_leaf_nodes": 7}}
    chosen, model, scores = baseline.tune(*found["train"], *found["val"], seed=0, grid=same)
    assert chosen == "first" and scores["first"] == scores["second"] and baseline.settings(model)[
        "max_leaf_nodes"] == 7


def test_balanced_rows_cut_every_class_to_the_rarest():
    rows = pd.DataFrame({"label": [0] * 9 + [1] * 4 + [2] * 3 + [3] * 6})
    cut = baseline.balanced(rows, seed=0)
    assert cut["label"].value_counts().tolist() == [3, 3, 3, 3]
    assert page.parts_table(baseline.split_rows(label_file(60), ours_for(label_file(60)), 0))["images"].sum() == (
        60 - 5) * 3


def test_the_page_words_follow_the_intervals():
    from types import SimpleNamespace

    from cxrlib.machinery.baseline import Scored
    from cxrlib.science.stats import Bootstrap

    y = np.tile(np.arange(len(CLASSES)), 30)
    perfect = np.eye(len(CLASSES))[y]
    scored = Scored("our test split", Bootstrap(y, np.arange(len(y)) // 2, n=200, seed=0),
                    {"labels only": perfect, **baseline.trivial_baselines(y, len(y), seed=0)})
    table = page.scores_table(scored)
    assert table.loc["labels only", "F1-macro"].startswith("1.000") and table.loc["labels only", "reading"] == ""
    assert table.loc["always No Finding", "reading"] == "not distinguishable from chance"
    sentence = page.score_sentence(scored)
    assert "(above chance)" in sentence and "No Finding: above (difference +0.9" in sentence
    assert "120 test images from 60 patients" in sentence
    found = SimpleNamespace(tests=[scored], without_history=scored, ours_missing=0,
                            importance=pd.DataFrame({"drop in macro F1": [0.2, 0.0]}, index=["age", "sex"]))
    summary = page.summary_text(found)
    assert summary.count("- On our test split") == 1 and summary.endswith("shuffled): age.")
