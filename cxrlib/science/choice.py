"""Choose on validation, report on test: the one rule by which the book names a best model, anywhere.

Picking the best of twenty models by their test score flatters the winner by luck, and the test split is then
no longer an independent check. So every "best" (a chapter's headline, the report's five models, the
conclusions' best, the subgroups' and the ensembles' members) is the highest validation macro F1 among the
candidates the caller names, ties going to the first in the caller's order (its stated preference).

>>> choose({"a": 0.4, "b": 0.6, "c": 0.6})
'b'
"""
from __future__ import annotations

import math

import pandas as pd

from cxrlib.core.manifest import REPORT_MODELS
from cxrlib.science.metrics import macro_f1

METRIC = "validation macro F1"


def validation_scores(val_predictions: dict) -> pd.Series:
    """key -> macro F1 of its validation predictions (frames with 'label' and 'pred')."""
    return pd.Series({key: macro_f1(frame["label"], frame["pred"]) for key, frame in val_predictions.items()},
                     name=METRIC, dtype=float)


def choose(scores, among=None) -> str:
    """The key with the highest score (a mapping or Series), among the keys named (default: all), first of
    equals in their order; a NaN score never wins. Raises ValueError naming the keys when none has a score."""
    scores = dict(scores)
    keys = [key for key in (scores if among is None else among)
            if key in scores and scores[key] is not None and not math.isnan(scores[key])]
    if not keys:
        named = ", ".join(map(str, among if among is not None else scores)) or "none"
        raise ValueError(f"no model has a validation score to choose by (candidates: {named}); run the chapters "
                         f"that train them first")
    return max(keys, key=lambda key: scores[key])  # max keeps the first of equals


def report_preference(key: str) -> int:
    """Rank of a candidate 'chapter/model' in the report's own preference (0 first), which breaks choose's ties:
    its deepest fine tuning first, then shallower ones in the report's order reversed, then the features-only head."""
    from cxrlib.core.backbones import BACKBONES

    model = key.split("/", 1)[1]
    for name, spec in BACKBONES.items():
        points = list(reversed(spec.unfreeze))
        if model.startswith(f"{name}_finetune_"):
            layer = model.removeprefix(f"{name}_finetune_")
            return points.index(layer) if layer in points else len(points)
    return 100


def report_candidates(saved) -> dict:
    """Report label -> the saved 'chapter/model' keys that stand for it (manifest.REPORT_MODELS), in the report's
    preference: the order in which choose() keeps the first of equals. Labels without any are left out."""
    found = {label: sorted((key for key in saved if key.startswith(f"{chapter}/{prefix}")),
                           key=lambda key: (report_preference(key), key))
             for label, (chapter, prefix) in REPORT_MODELS.items()}
    return {label: keys for label, keys in found.items() if keys}
