"""The conclusions chapter chooses 'our best' on validation and reports its test numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.machinery import conclusions, runs


def frame(labels, preds):
    return runs.predictions_frame([f"{i}.png" for i in range(len(labels))], labels, np.eye(4)[preds] * 0.9 + 0.025)


class Source:
    synthetic, kind = False, "dataset"

    def describe(self):
        return "a test source"


def test_best_is_chosen_on_validation_not_on_test():
    labels = np.arange(8) % 4
    val = {"a/good_on_val": frame(labels, labels), "b/good_on_test": frame(labels, (labels + 1) % 4)}
    scores = conclusions.validation_scores(val)
    assert scores["a/good_on_val"] == 1.0 and scores["b/good_on_test"] == 0.0
    ours = pd.DataFrame({"Accuracy": [0.3, 0.9], "F1-macro": [0.3, 0.9], "ROC AUC": [0.5, 0.95]},
                        index=["a/good_on_val", "b/good_on_test"])
    assert conclusions.choose_best(scores, ours) == "a/good_on_val"
    text = conclusions.closing_statement(ours, Source(), 8, "smoke", scores)
    assert "**a/good_on_val**" in text and "validation macro F1 1.0000" in text and "F1-macro: 0.3000" in text
    assert conclusions.WHY in text
    fig = conclusions.plot_best_vs_report(ours, scores)
    assert "ours: a/good_on_val" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
