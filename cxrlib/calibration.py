"""Calibration (beyond the report): do the probabilities mean what they say? Reliability diagrams,
expected calibration error over equal-mass bins, and temperature scaling fitted on validation only."""
from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 15
EPS = 1e-12


def equal_mass_bins(confidence, bins: int = BINS) -> np.ndarray:
    """Bin index of each prediction, with (nearly) the same number of predictions in every bin."""
    order = np.argsort(np.asarray(confidence), kind="stable")
    index = np.empty(len(order), int)
    index[order] = np.arange(len(order)) * bins // max(len(order), 1)
    return index


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


def scale(probs, temperature: float) -> np.ndarray:
    """Probabilities recomputed from log-probabilities divided by the temperature (T > 1 softens)."""
    logits = np.log(np.clip(np.asarray(probs, float), EPS, 1)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(y_true, probs) -> float:
    """Mean -log p(true class): what temperature scaling minimises."""
    probs = np.asarray(probs, float)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(probs)), np.asarray(y_true)], EPS, 1))))


def fit_temperature(y_val, probs_val) -> float:
    """Guo et al.'s temperature scaling: the one T minimising validation log-loss (searched in [0.05, 20])."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: negative_log_likelihood(y_val, scale(probs_val, np.exp(log_t))),
                            bounds=(np.log(0.05), np.log(20)), method="bounded")
    return float(np.exp(found.x))


def temperature_table(val: dict, test: dict, y_val, y_test, bins: int = BINS) -> pd.DataFrame:
    """Per model: the temperature fitted on validation, and test ECE and log-loss before and after it.

    val, test: name -> probabilities (rows in the order of y_val, y_test).
    """
    rows = {}
    for name in test:
        t = fit_temperature(y_val, val[name])
        after = scale(test[name], t)
        rows[name] = {"temperature (fitted on validation)": t,
                      "ECE before": expected_calibration_error(y_test, test[name], bins),
                      "ECE after": expected_calibration_error(y_test, after, bins),
                      "log-loss before": negative_log_likelihood(y_test, test[name]),
                      "log-loss after": negative_log_likelihood(y_test, after)}
    return pd.DataFrame(rows).T.rename_axis("model (test set)")


def plot_reliability(curves: dict, y_true, title: str, bins: int = BINS):
    """Reliability diagram: accuracy against confidence per equal-mass bin, one line per model, ECE in the legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    for name, probs in curves.items():
        table = reliability(y_true, probs, bins)
        ece = expected_calibration_error(y_true, probs, bins)
        ax.plot(table["confidence"], table["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(title=title, xlabel=f"mean confidence of the predicted class ({bins} equal-mass bins)",
           ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside the data (the book's figure style)
    fig.tight_layout()
    return fig
