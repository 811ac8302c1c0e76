"""The report's metrics for one model on one split, as one DataFrame row (their plots are cxrlib.present.figures')."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support

from cxrlib.core.config import CLASSES
from cxrlib.science.stats import EPS, weighted_metrics

# Column names follow the report's tables.
GLOBAL_COLUMNS = ["Accuracy", "Loss", "ROC AUC", "F1-macro", "FNFR", "Inference time (s)"]
F1_COLUMNS = [f"F1-{c}" for c in CLASSES]


def accuracy(y_true, y_pred) -> float:
    """Share of images whose predicted class is the true one."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def true_class_loss(y_true, log_probs) -> float:
    """Mean -log p(true class) from log-probabilities: the cross-entropy of the metrics and of calibration alike."""
    log_probs = np.asarray(log_probs, float)
    return float(-np.mean(log_probs[np.arange(len(log_probs)), np.asarray(y_true, int)]))


def cross_entropy(y_true, probs) -> float:
    """Mean categorical cross-entropy, with probabilities clipped as Keras does."""
    return true_class_loss(y_true, np.log(np.clip(np.asarray(probs, float), EPS, 1 - EPS)))


# Macro averages (F1 and ROC AUC alike) run over the classes present in the true labels: a class
# with no true image has no recall and no ROC curve, so it is left out rather than scored as 0.


def present_classes(y_true) -> list:
    """Indices of the classes that occur in the true labels: what every macro average runs over."""
    return [k for k in range(len(CLASSES)) if np.any(np.asarray(y_true) == k)]


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean of the per-class F1 over the classes present in the true labels."""
    present = present_classes(y_true)
    if not present:
        return math.nan
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def metrics_row(name: str, y_true, probs, seconds: float = math.nan) -> pd.DataFrame:
    """Every metric of the report for one model, as a row ready for pd.concat into a table (the row the pages show,
    with the classes the model predicts in words: cxrlib.present.labels.metrics_row)."""
    probs = np.asarray(probs, float)
    if probs.ndim != 2 or probs.shape[1] != len(CLASSES) or len(probs) != len(y_true):
        raise ValueError(f"probs must have shape ({len(y_true)}, {len(CLASSES)}), got {probs.shape}")
    whole = weighted_metrics(y_true, probs, np.ones((1, len(probs))))  # the bootstrap's metrics, unit weights
    values = {**{metric: float(value[0]) for metric, value in whole.items()}, "Inference time (s)": seconds}
    return pd.DataFrame([values], index=pd.Index([name], name="Model"))[GLOBAL_COLUMNS + F1_COLUMNS]


def class_report(y_true, y_pred) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, as the report's classification reports."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(len(CLASSES)), zero_division=0)
    return pd.DataFrame({"precision": p, "recall": r, "F1": f, "support": s}, index=list(CLASSES))


def agreement(hits: pd.DataFrame) -> tuple:
    """What error analysis asks of an image x model table of hits (True: the true class predicted): (images every
    model misses, images every model gets right, model -> (images only it misses, only it gets right, accuracy))."""
    others = {model: hits.drop(columns=model) for model in hits}
    only = {model: (int((~hits[model] & others[model].all(axis=1)).sum()),
                    int((hits[model] & ~others[model].any(axis=1)).sum()), float(hits[model].mean())) for model in hits}
    return int((~hits).all(axis=1).sum()), int(hits.all(axis=1).sum()), only
