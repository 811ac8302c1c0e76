"""The ensemble page's members and ensembles side by side: one set of scores, probabilities and logits for its
question, its forest, its reliability diagrams and its temperatures."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cxrlib.core.frames import logits, probabilities
from cxrlib.science.choice import METRIC


@dataclass
class SideBySide:
    """Members (by display label) then ensembles (by display name), each keyed alike in every field."""

    scores: pd.Series  # validation macro F1 (the ensembles' out of fold)
    probs: dict  # test probabilities
    val_logits: dict
    test_logits: dict


def side_by_side(choice: pd.DataFrame, val: dict, test: dict, done) -> SideBySide:
    """The members' saved predictions (val, test: label -> frame; choice: their validation scores) beside the
    ensembles' (done: machinery.analysis.Ensembles), so that no page joins them by hand."""
    ensembles = {name: done.frames[key] for name, key in done.names.items()}
    return SideBySide(
        pd.concat([choice[METRIC].astype(float), done.val_scores()]),
        {**{label: probabilities(f) for label, f in test.items()},
         **{name: probabilities(f["test"]) for name, f in ensembles.items()}},
        {**{label: logits(f) for label, f in val.items()},
         **{name: done.fitted.val_log_probs[key] for name, key in done.names.items()}},
        {**{label: logits(f) for label, f in test.items()},
         **{name: logits(f["test"]) for name, f in ensembles.items()}})
