"""A claim follows its interval: the words and tables of cxrlib.present.claims on known cases."""
import numpy as np
import pytest

from cxrlib.present import claims
from cxrlib.science.baseline import trivial_baselines
from cxrlib.science.stats import Bootstrap, Interval

WHERE = "82 test images from 62 patients"


def model(y, skill, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 4)) + skill * np.eye(4)[y]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def split():
    y = np.r_[np.zeros(100, int), np.arange(100) % 4]  # No Finding the majority, as in the sample
    return y, Bootstrap(y, patients=np.arange(len(y)) // 2, n=400, seed=0)


@pytest.mark.parametrize("found, word", [(Interval(0.1, 0.02, 0.2), "above"), (Interval(-0.1, -0.2, -0.01), "below"),
                                         (Interval(0.1, -0.02, 0.2), f"indistinguishable on {WHERE}"),
                                         (Interval(0.0, 0.0, 0.0), f"indistinguishable on {WHERE}")])
def test_words_follow_the_interval_and_a_tie_is_a_tie(found, word):
    assert claims.difference_word(found, WHERE) == word


def test_an_answer_says_cannot_tell_where_the_interval_holds_zero():
    assert claims.answer(Interval(0.05, -0.03, 0.12), WHERE).startswith(f"cannot tell on {WHERE}")
    assert claims.answer(Interval(0.05, 0.01, 0.12), WHERE).startswith("yes")
    assert claims.answer(Interval(-0.05, -0.1, -0.01), WHERE).startswith("no")


def test_a_model_at_chance_is_marked_and_a_good_one_is_not(split):
    y, boot = split
    baselines = trivial_baselines(y, len(y), seed=0)
    assert claims.NOT_CHANCE in claims.reading(boot, model(y, 0.0, 1), baselines)
    assert claims.reading(boot, model(y, 5.0, 1), baselines) == ""


def test_the_majority_baseline_is_hard_to_beat_in_accuracy(split):
    y, boot = split
    baselines = trivial_baselines(y, len(y), seed=0)
    weak = model(y, 0.7, 2)  # better than chance, not better than always answering No Finding
    assert "accuracy not above always No Finding" in claims.reading(boot, weak, baselines)


def test_results_table_has_intervals_report_rows_and_baselines(split):
    y, boot = split
    table = claims.results_table(boot, {"ours": model(y, 3.0, 3)}, {"ours": "Fused"}, trivial_baselines(y, len(y), seed=0))
    assert list(table.index) == [("ours", "ours"), ("ours", "report (Fused)"), ("always No Finding", "baseline"),
                                 ("random guess (training shares)", "baseline")]
    low, high = (float(v) for v in table.loc[("ours", "ours"), "F1-macro"].split("(")[1].rstrip(")").split("–"))
    assert low < float(table.loc[("ours", "ours"), "F1-macro"].split()[0]) < high
    assert table.loc[("ours", "report (Fused)"), "F1-macro"] == "0.6056"
    assert table.loc[("always No Finding", "baseline"), "ROC AUC"] == "0.500 (0.500–0.500)"


def test_against_the_report_reads_each_metric_from_our_interval(split):
    y, boot = split
    text = claims.against_report(boot, model(y, 0.0, 4), "weak", "Weighted average voting")
    assert "macro ROC AUC" in text and ": below" in text and "above" not in text
    assert f"{boot.images} test images from {boot.patient_count} patients" in text


def test_question_row_answers_from_the_paired_difference(split):
    y, boot = split
    good, bad = model(y, 5.0, 5), model(y, 0.0, 6)
    assert claims.question_row(boot, "q?", good, bad, "yes")["here (test macro F1, a − b)"].startswith("yes")
    same = claims.question_row(boot, "q?", good, good.copy(), "yes")["here (test macro F1, a − b)"]
    assert same.startswith("no difference")
