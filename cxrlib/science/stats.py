"""How sure is a number measured on a few dozen test images? Patient-clustered bootstrap intervals for every
metric, differences between two models on the same resamples, and what a test split can resolve.

A patient's images are correlated (in the sample one patient supplies most of a class's test images), so a
resample draws whole patients with replacement (the cluster bootstrap: Davison & Hinkley, *Bootstrap Methods
and their Application*, 1997, section 3.8). A resample is a vector of multiplicities, how often each image's
patient was drawn, and every metric is computed with those multiplicities as weights. One draw serves every
model of a split, so the difference of two models is paired: its interval comes from the same resamples.

>>> boot = Bootstrap([0, 1, 0, 1], patients=[1, 1, 2, 2], n=200, seed=0)
>>> boot.interval([[.9, .1, 0, 0], [.2, .8, 0, 0], [.7, .3, 0, 0], [.4, .6, 0, 0]], "Accuracy").estimate
1.0
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import norm

from cxrlib.core.config import CLASSES, NO_FINDING

LEVEL = 0.95
# Power for the smallest difference a split can resolve (the conventional 80%).
POWER = 0.8
EPS = 1e-7  # probabilities clipped as Keras clips them, for the loss
# The resamples' own seed stream, derived from the run's seed (no other draw shares it).
STREAM = 0xB007
METRICS = ("Accuracy", "F1-macro", "ROC AUC", "FNFR", *(f"F1-{c}" for c in CLASSES))


class Interval(NamedTuple):
    """An estimate on the whole split, its percentile interval, and the resamples in which it was undefined
    (a group or class drawn empty: those resamples are left out of the interval, and counted here)."""

    estimate: float
    low: float
    high: float
    empty: int = 0

    @property
    def sign(self) -> int:
        """+1 where the whole interval lies above 0, -1 where below, 0 where it holds 0 (for a difference)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def holds(self, value: float) -> bool:
        """Whether value lies inside the interval (an interval that is all NaN holds everything: it says nothing)."""
        return not (self.low > value or self.high < value)


def patient_resamples(patients, n: int = 1000, seed: int = 0) -> np.ndarray:
    """(n, images): how often each image's patient was drawn in each of n resamples of the patients."""
    codes, index = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    draws = np.random.default_rng([seed, STREAM]).integers(len(codes), size=(n, len(codes)))
    rows = (np.arange(n)[:, None] * len(codes) + draws).ravel()  # each draw's cell of the (n, patients) counts
    return np.bincount(rows, minlength=n * len(codes)).reshape(n, len(codes)).astype(float)[:, index]


def ratio(top, bottom) -> np.ndarray:
    """top / bottom, NaN where bottom is 0."""
    top, bottom = np.asarray(top, float), np.asarray(bottom, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def weighted_auc(scores, positive, weights) -> np.ndarray:
    """ROC AUC of scores for the positive images under each row of weights (ties count one half, as the area
    under the trapezoid curve of scikit-learn's roc_auc_score): NaN where a row weighs no positive or no negative.
    Images are sorted by score and summed per distinct score, so memory grows with rows x images, never images²."""
    values, group = np.unique(np.asarray(scores, float), return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) > 0])
    positive, weights = np.asarray(positive, bool)[order], np.asarray(weights, float)[:, order]
    pos = np.add.reduceat(weights * positive, starts, axis=1)
    neg = np.add.reduceat(weights * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return ratio((pos * (below + neg / 2)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))


def nanmean_rows(table: np.ndarray, min_count: int = 1) -> np.ndarray:
    """Mean of each row over its defined values; NaN where fewer than min_count are defined."""
    count = np.sum(~np.isnan(table), axis=1)
    total = np.nansum(table, axis=1)
    return np.where(count >= min_count, total / np.maximum(count, 1), np.nan)


def weighted_metrics(y_true, probs, weights) -> dict:
    """metric -> (rows,) values of every metric of METRICS, and of "Loss" (the mean cross-entropy, clipped as
    Keras's), under each row of weights (image multiplicities).

    With unit weights these are metrics.metrics_row's values: macro averages run over the classes present, a
    class's F1 is NaN where it is neither present nor predicted, ROC AUC needs two classes present."""
    y_true, probs = np.asarray(y_true, int), np.asarray(probs, float)
    weights = np.atleast_2d(np.asarray(weights, float))
    pred, k = probs.argmax(axis=1), len(CLASSES)
    truth_1h, pred_1h = np.eye(k)[y_true], np.eye(k)[pred]
    truth, said, hit = weights @ truth_1h, weights @ pred_1h, weights @ (truth_1h * pred_1h)
    f1 = ratio(2 * hit, said + truth)
    present = truth > 0
    auc = np.stack([np.where(present[:, c], weighted_auc(probs[:, c], y_true == c, weights), np.nan)
                    for c in range(k)], axis=1)
    diseased = y_true != NO_FINDING
    found = {"Accuracy": ratio(hit.sum(axis=1), weights.sum(axis=1)),
             "F1-macro": nanmean_rows(np.where(present, f1, np.nan)),
             "ROC AUC": nanmean_rows(auc, min_count=2),
             "FNFR": ratio(weights @ (diseased & (pred == NO_FINDING)), weights @ diseased),
             "Loss": ratio(weights @ -np.log(np.clip(probs[np.arange(len(pred)), y_true], EPS, 1 - EPS)),
                           weights.sum(axis=1))}
    found.update({f"F1-{name}": np.where(present[:, c] | (said[:, c] > 0), f1[:, c], np.nan)
                  for c, name in enumerate(CLASSES)})
    return found


def percentile_interval(estimate: float, samples, level: float = LEVEL) -> Interval:
    """The estimate with the percentile interval of the resamples where it is defined (NaN, NaN when none is)."""
    samples = np.asarray(samples, float)
    defined = samples[~np.isnan(samples)]
    if not len(defined):
        return Interval(float(estimate), np.nan, np.nan, len(samples))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), int(len(samples) - len(defined)))


class Bootstrap:
    """One set of patient resamples of one split, shared by every model scored on it (so differences pair)."""

    def __init__(self, y_true, patients, n: int = 1000, seed: int = 0, level: float = LEVEL):
        self.y_true = np.asarray(y_true, int)
        self.patients = np.asarray(patients).astype(str)
        if len(self.patients) != len(self.y_true):
            raise ValueError(f"{len(self.patients)} patients for {len(self.y_true)} labels: one per image")
        self.weights, self.level = patient_resamples(self.patients, n, seed), level
        self.images, self.patient_count = len(self.y_true), len(np.unique(self.patients))
        self._cache = {}

    def values(self, probs) -> tuple:
        """(metric -> estimate on the whole split, metric -> resampled values) of one model's probabilities."""
        probs = np.asarray(probs, float)
        key = probs.tobytes()
        if key not in self._cache:
            whole = weighted_metrics(self.y_true, probs, np.ones((1, self.images)))
            self._cache[key] = ({m: float(v[0]) for m, v in whole.items()},
                                weighted_metrics(self.y_true, probs, self.weights))
        return self._cache[key]

    def interval(self, probs, metric: str) -> Interval:
        """One metric of one model with its interval."""
        estimate, samples = self.values(probs)
        return percentile_interval(estimate[metric], samples[metric], self.level)

    def intervals(self, probs, metrics=METRICS) -> dict:
        """metric -> Interval, for one model."""
        return {metric: self.interval(probs, metric) for metric in metrics}

    def difference(self, probs_a, probs_b, metric: str = "F1-macro") -> Interval:
        """Model a minus model b on one metric, on the same resamples (a paired difference)."""
        (whole_a, a), (whole_b, b) = self.values(probs_a), self.values(probs_b)
        return percentile_interval(whole_a[metric] - whole_b[metric], a[metric] - b[metric], self.level)

    def against(self, probs, metric: str, value: float) -> Interval:
        """The model's metric minus a fixed number (a published result): the model's own interval, shifted."""
        estimate, samples = self.values(probs)
        return percentile_interval(estimate[metric] - value, samples[metric] - value, self.level)

    def spread(self, probs_a, probs_b, metric: str = "F1-macro") -> float:
        """Standard deviation of the resampled difference of two models (what sets the resolvable difference)."""
        (_, a), (_, b) = self.values(probs_a), self.values(probs_b)
        return float(np.nanstd(a[metric] - b[metric]))


def resolvable_difference(spread: float, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true difference whose interval excludes 0 with the given power, for a difference whose
    resampled standard deviation is `spread` (normal approximation: (z_level + z_power) * spread)."""
    return float((norm.ppf(1 - (1 - level) / 2) + norm.ppf(power)) * spread)


def patients_needed(spread: float, patients: int, difference: float, level: float = LEVEL,
                    power: float = POWER) -> float:
    """Roughly how many patients a split like ours needs to resolve `difference`: the spread shrinks as one
    over the square root of the number of independent units."""
    if difference == 0:
        return float("inf")
    return float(patients * (resolvable_difference(spread, level, power) / abs(difference)) ** 2)
