"""The conclusions chapter's words (cxrlib.present.conclusions): our best chosen on validation, every comparison
read from the interval of its difference, and what the test split can resolve."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.present import conclusions
from cxrlib.science.choice import choose, validation_scores
from cxrlib.science.stats import Bootstrap
from cxrlib.core.frames import predictions_frame


def model(y, skill, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 4)) + skill * np.eye(4)[y]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


Y = np.arange(160) % 4
BOOT = Bootstrap(Y, patients=np.arange(160) // 2, n=300, seed=0)
TEST = {"scratch/good": model(Y, 5.0, 1), "fused/noise": model(Y, 0.0, 2), "fused/other_noise": model(Y, 0.0, 3)}
FAMILIES = {"scratch/good": "CNN from scratch", "fused/noise": "fused network", "fused/other_noise": "fused network"}


def test_the_best_is_chosen_on_validation_not_on_test():
    labels = np.arange(8) % 4
    val = {"a/good_on_val": predictions_frame(range(8), labels, np.eye(4)[labels]),
           "b/good_on_test": predictions_frame(range(8), labels, np.eye(4)[(labels + 1) % 4])}
    scores = validation_scores(val)
    assert choose(scores) == "a/good_on_val"  # b would win on test: the choice never looks there


def test_the_choice_sentence_counts_the_very_candidates_chosen_among():
    text = conclusions.choice_sentence(["scratch/a", "ensemble/ga", "ensemble/average"])
    assert "among all 3 models" in text and "the 2 ensembles among them by their out-of-fold" in text
    assert "ensembles" not in conclusions.choice_sentence(["scratch/a"])


def test_a_family_wins_only_where_every_other_family_lies_below():
    scores = pd.Series({"scratch/good": 0.9, "fused/noise": 0.3, "fused/other_noise": 0.2})
    table = conclusions.family_table(BOOT, TEST, scores, FAMILIES, {"fused/noise": "Fused"})
    assert table.loc["fused network", "its best (on validation)"] == "fused/noise"  # chosen on validation
    assert table.loc["fused network", "the report's row (macro F1)"] == "Fused: 0.6056"
    assert table.loc["fused network", "against our best"].startswith("below")
    assert conclusions.family_verdict(table, "here").startswith("**CNN from scratch** wins")
    tied = dict(TEST, **{"scratch/good": model(Y, 0.0, 4)})
    verdict = conclusions.family_verdict(conclusions.family_table(BOOT, tied, scores, FAMILIES), "here")
    assert verdict.startswith("No family wins on here")


def test_the_family_plot_draws_each_other_familys_difference_from_our_best():
    scores = pd.Series({"scratch/good": 0.9, "fused/noise": 0.3, "fused/other_noise": 0.2})
    table = conclusions.family_table(BOOT, TEST, scores, FAMILIES)
    gaps = conclusions.family_differences(BOOT, TEST, table)
    assert list(gaps) == ["fused network"]  # our best's own family is the zero line, not a bar
    assert gaps["fused network"] == BOOT.difference(TEST["fused/noise"], TEST["scratch/good"])
    assert gaps["fused network"].high < 0


def test_the_ensemble_question_compares_the_validation_choices():
    scores = pd.Series({"ens": 0.5, "a": 0.4, "b": 0.6})
    probs = {"ens": model(Y, 5.0, 5), "a": model(Y, 0.0, 6), "b": model(Y, 0.0, 7)}
    text = conclusions.ensemble_question(BOOT, probs, scores, ["ens"], ["a", "b"])
    assert text.startswith("Does the ensemble help? yes") and "**ens** against **b**" in text
    assert "No ensemble" in conclusions.ensemble_question(BOOT, probs, scores, [], ["a"])


def test_resolution_shrinks_with_more_patients():
    smallest, needed = conclusions.resolution(BOOT, TEST, list(TEST))
    assert 0 < smallest < 1
    big = Bootstrap(np.tile(Y, 4), patients=np.arange(640) // 2, n=300, seed=0)
    bigger = {k: np.tile(v, (4, 1)) for k, v in TEST.items()}
    assert conclusions.resolution(big, bigger, list(bigger))[0] < smallest
    assert list(needed.columns) == ["macro F1 difference", "patients needed (about)", "test images needed (about)"]


def test_closing_statement_reads_each_metric_from_its_interval():
    text = conclusions.closing_statement("fused/noise", BOOT, TEST["fused/noise"], 0.3, ["2 epochs (report: up to 30)"],
                                         chance="not distinguishable from chance", predicts="3: never No Finding")
    assert "macro F1" in text and "ours is below" in text and "above" not in text
    assert "- 2 epochs (report: up to 30)" in text and "not distinguishable from chance" in text
    assert "never predicts No Finding" in text


def test_summary_counts_models_above_each_baseline():
    baselines = {"random guess (training shares)": model(Y, 0.0, 9)}
    lines = conclusions.baseline_counts(BOOT, TEST, baselines)
    assert lines == ["1 of our 3 models lie above **random guess (training shares)** in macro F1"]
