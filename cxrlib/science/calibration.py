"""Calibration (beyond the report): do the probabilities mean what they say? Reliability diagrams,
expected calibration error over equal-mass bins, and temperature scaling fitted on validation only.

Temperature scaling works on logits (the classifier's pre-softmax scores, saved with every prediction):
log-probabilities recovered from saved probabilities would be clipped where a probability underflows, and
a sharp model's fitted temperature would then come out far too small.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from cxrlib.science.metrics import true_class_loss

BINS = 15
# Temperatures searched, on a log scale: wide enough for a model 40 times too sharp; a fit at either end says so.
SEARCH = (0.01, 100.0)
AT_BOUND = 1e-3  # a fit this close to an end of the search (in log T) stopped there


def equal_mass_bins(confidence, bins: int = BINS) -> np.ndarray:
    """Bin of each prediction by its rank, (nearly) the same count in every bin; tied confidences take the bin
    of their lowest rank, so they share one bin and the bins never depend on the order of the rows.

    Not scikit-learn's calibration_curve(strategy="quantile"): it also keeps ties together, but returns no
    bin counts, which the ECE weights by.
    """
    confidence = np.asarray(confidence, float)
    first_rank = np.searchsorted(np.sort(confidence), confidence, side="left")
    return first_rank * bins // max(len(confidence), 1)


def reliability(y_true, probs, bins: int = BINS) -> pd.DataFrame:
    """Per bin of top-class confidence: mean confidence, accuracy and count (equal-mass bins)."""
    probs = np.asarray(probs, float)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y_true)
    frame = pd.DataFrame({"bin": equal_mass_bins(confidence, bins), "confidence": confidence, "accuracy": correct})
    return frame.groupby("bin").agg(confidence=("confidence", "mean"), accuracy=("accuracy", "mean"),
                                    count=("accuracy", "size"))


def expected_calibration_error(y_true, probs, bins: int = BINS) -> float:
    """Mean gap between confidence and accuracy over equal-mass bins, weighted by bin size (top class)."""
    table = reliability(y_true, probs, bins)
    return float(np.sum(table["count"] * (table["confidence"] - table["accuracy"]).abs()) / table["count"].sum())


def log_softmax(logits) -> np.ndarray:
    """Log-probabilities of logits, in float64 and never clipped (exact where a probability underflows)."""
    z = np.asarray(logits, float)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits) -> np.ndarray:
    """Probabilities of logits (rows sum to 1)."""
    return np.exp(log_softmax(logits))


def scale(logits, temperature: float) -> np.ndarray:
    """Probabilities of the logits divided by the temperature: T > 1 softens them (the fit says the model was
    over-confident), T < 1 sharpens them (under-confident); the top class never changes."""
    return softmax(np.asarray(logits, float) / temperature)


def negative_log_likelihood(y_true, logits) -> float:
    """Mean -log p(true class) from logits: what temperature scaling minimises (the log-loss)."""
    return true_class_loss(y_true, log_softmax(logits))


def balancing_offsets(logits, labels, shares=None, tolerance: float = 1e-9, max_steps: int = 1000) -> np.ndarray:
    """Per-class logit offsets after which each class's mean predicted probability over these rows equals a target
    share: by default its share of their labels, a prior correction (Saerens, Latinne & Decaestecker, Neural
    Computation 14, 2002) fitted on validation only; or the shares given (equal shares: the balanced prior that
    class weights train for).

    A small net leans away from the prior it was trained for (under class weights, towards its majority class all
    the same); these offsets take that lean away. With the labels' shares they are the bias shift of least
    log-loss on these rows (its gradient in each offset is mean probability minus share), so a calibrated model
    stays (nearly) as it was. Each step divides a class's probabilities by their mean over its share, in log space
    (saturated probabilities stay exact); centred.

    >>> balancing_offsets([[2.0, 0.0], [2.0, 0.0]], [0, 1]).round(6).tolist()
    [-1.0, 1.0]
    """
    z = np.asarray(logits, float)
    if z.ndim != 2 or not len(z):
        raise ValueError(f"logits must be a non-empty (images, classes) array, got shape {z.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(z),):
        raise ValueError(f"labels must hold one class per row of logits ({len(z)}), got shape {labels.shape}")
    counts = np.bincount(labels, minlength=z.shape[1])
    if shares is None and (len(counts) != z.shape[1] or not counts.all()):
        raise ValueError(f"every class needs a label among these rows to match its share, got counts {counts.tolist()}")
    log_share = np.log(counts / len(z) if shares is None else np.asarray(shares, float))
    offsets = np.zeros(z.shape[1])
    for _ in range(max_steps):
        step = np.logaddexp.reduce(log_softmax(z + offsets), axis=0) - np.log(len(z)) - log_share
        offsets -= step - step.mean()
        if np.abs(step - step.mean()).max() < tolerance:
            break
    return offsets - offsets.mean()


class TemperatureFit(NamedTuple):
    """A fitted temperature, and whether the search stopped at one of its ends (the optimum may lie beyond)."""

    temperature: float
    at_bound: bool  # the page says so (cxrlib.present.labels.temperature_text)


def fit_temperature(y_val, logits_val, search=SEARCH) -> TemperatureFit:
    """Guo et al.'s temperature scaling: the one T minimising validation log-loss of the logits / T."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(search[0]), np.log(search[1])

    def loss(log_t):
        return negative_log_likelihood(y_val, np.asarray(logits_val, float) / np.exp(log_t))

    found = minimize_scalar(loss, bounds=(low, high), method="bounded").x
    best = min((low, high, found), key=loss)  # the ends too: on a flat stretch the search stops anywhere
    return TemperatureFit(float(np.exp(best)), bool(min(best - low, high - best) < AT_BOUND))


def fit_temperatures(val: dict, y_val) -> dict:
    """name -> TemperatureFit, each fitted on the validation logits alone."""
    return {name: fit_temperature(y_val, logits) for name, logits in val.items()}


def temperature_table(val: dict, test: dict, y_val, y_test, bins: int = BINS) -> pd.DataFrame:
    """Per model: the temperature fitted on validation (and whether at a search bound), test ECE and log-loss before
    and after it (T > 1: over-confident on validation, T < 1: under-confident; a rise after scaling: a temperature
    fitted on a small validation set need not carry over). In words, with flags: present.labels.worded_temperatures.

    val, test: name -> logits (or log-probabilities; rows in the order of y_val, y_test).
    """
    rows, fits = {}, fit_temperatures({name: val[name] for name in test}, y_val)
    for name in test:
        fit, logits = fits[name], np.asarray(test[name], float)
        before, after = softmax(logits), scale(logits, fit.temperature)
        rows[name] = {"temperature": fit.temperature, "at search bound": fit.at_bound,
                      "ECE before": expected_calibration_error(y_test, before, bins),
                      "ECE after": expected_calibration_error(y_test, after, bins),
                      "log-loss before": negative_log_likelihood(y_test, logits),
                      "log-loss after": negative_log_likelihood(y_test, logits / fit.temperature)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model (test set)")
