"""Baselines that never see a pixel (placeholder until the baseline branch lands: only the trivial ones)."""
from __future__ import annotations

import numpy as np
from sklearn.dummy import DummyClassifier

from cxrlib.core.config import CLASSES

MAJORITY, GUESS = "always No Finding", "random guess (training shares)"


def trivial_baselines(y_train, n_rows: int, seed: int = 0) -> dict:
    """name -> (n_rows, classes) probabilities of the two models every result must beat: the training split's
    majority class always, and a random guess drawn with the training split's class shares."""
    y_train = np.asarray(y_train, int)
    x_train, x = np.zeros((len(y_train), 1)), np.zeros((n_rows, 1))
    found = {}
    for name, strategy in ((MAJORITY, "most_frequent"), (GUESS, "stratified")):
        model = DummyClassifier(strategy=strategy, random_state=seed).fit(x_train, y_train)
        probs = np.zeros((n_rows, len(CLASSES)))
        probs[:, model.classes_] = model.predict_proba(x)
        found[name] = probs
    return found
