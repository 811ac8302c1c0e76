"""Figures of the science's results: confusion matrices, per-class reports, reliability diagrams, the GA's
history, bootstrap intervals and Hyperband trials."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from sklearn.metrics import confusion_matrix

from cxrlib.core.config import CLASSES
from cxrlib.present.plots import legend_below, legend_outside, score_axis, short_lines, wrapped
from cxrlib.science.calibration import BINS, expected_calibration_error, reliability
from cxrlib.science.metrics import class_report
from cxrlib.science.otsu import OtsuSteps


def plot_reliability(curves: dict, y_true, title: str, bins: int = BINS, columns: int = 3):
    """Reliability diagrams, one small panel per model (its ECE in the panel's title): accuracy against
    confidence per equal-mass bin, marker area by the bin's images, beside the diagonal of perfect calibration.

    The top class's confidence is never below 1/classes, so the x axis starts there. One panel per model keeps
    every curve readable however many there are; the legend sits below the panels, never over a curve.
    """
    names = list(curves)
    columns = max(1, min(columns, len(names)))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7.5, 2.6 * rows + 1.1), squeeze=False, sharex=True, sharey=True)
    floor = 1 / np.asarray(next(iter(curves.values()))).shape[1] if names else 0.0
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        table = reliability(y_true, curves[name], bins)
        ece = expected_calibration_error(y_true, curves[name], bins)
        ax.plot([floor, 1], [floor, 1], color="gray", linestyle="--", linewidth=1)
        ax.scatter(table["confidence"], table["accuracy"], s=8 + 60 * table["count"] / table["count"].max(),
                   color="#1f77b4", zorder=3)
        ax.set_title(f"{short_lines(name)}\nECE {ece:.3f}", fontsize=8)
        ax.set(xlim=(floor - 0.02, 1.02), ylim=(-0.02, 1.02), yticks=[0, 0.5, 1.0],
               xticks=[0.25, 0.5, 0.75, 1.0] if floor <= 0.25 else [floor, 1.0])
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(names) - columns:len(names)]:  # the lowest drawn panel of each column: axis labels
        ax.tick_params(labelbottom=True)
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    fig.suptitle(wrapped(title))
    handles = [Line2D([], [], color="gray", linestyle="--", label="perfect calibration"),
               Line2D([], [], color="#1f77b4", marker="o", linestyle="none",
                      label=f"accuracy in each of {bins} equal-mass bins of confidence (area: images in the bin)")]
    fig.tight_layout(rect=(0, 0.09 if rows == 1 else 0.06, 1, 1))
    legend_below(fig, handles=handles, fontsize=8)
    return fig


def plot_ga_history(results: list, title: str = "Genetic algorithm: best macro F1 per generation"):
    """Convergence of every restart."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for result in results:
        ax.plot(result.history, label=f"seed {result.seed}")
    ax.set(title=title, xlabel="generation", ylabel="best macro F1 (validation)")
    score_axis(ax, [r.history for r in results])  # never a scale finer than one image's worth of F1
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_forest(intervals: dict, title: str, reference: dict | None = None, xlabel: str = "macro F1 (test set)",
                xlim: tuple = (0, 1)):
    """Each model's estimate with its 95% interval (name -> stats.Interval), first at the top, and a dashed
    line at each reference number (name -> value): where intervals overlap, the models are not told apart."""
    names = [short_lines(name) for name in intervals]  # a bracketed tag on a line of its own: a wider plot
    est = np.array([found.estimate for found in intervals.values()])
    low = np.nan_to_num(est - np.array([found.low for found in intervals.values()]))
    high = np.nan_to_num(np.array([found.high for found in intervals.values()]) - est)
    pitch = 0.45 if any("\n" in name for name in names) else 0.32  # inches per row: room for two-line names
    fig, ax = plt.subplots(figsize=(8, pitch * len(names) + 1.6))
    rows = np.arange(len(names))[::-1]
    ax.errorbar(est, rows, xerr=[low, high], fmt="o", capsize=3)
    for (label, value), style in zip((reference or {}).items(), ("--", ":", "-.")):
        ax.axvline(value, linestyle=style, color="grey", label=f"{label}: {value:.3f}")
    ax.set_yticks(rows, names)
    ax.set(title=wrapped(title, 60), xlabel=xlabel, xlim=xlim)
    if reference:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return fig


def plot_f1_forest(boot, models: dict, report_label: str = ""):
    """plot_forest of each model's test macro F1 (models: name -> test probabilities, baselines included) on one
    set of patient resamples, with the report's best (report.BEST) as a reference line named report_label."""
    from cxrlib.present.claims import units
    from cxrlib.present.report import BEST

    reference = {report_label: BEST["F1-macro"]} if report_label else None
    return plot_forest({name: boot.interval(p, "F1-macro") for name, p in models.items()},
                       f"Macro F1 with 95% patient intervals ({units(boot.images, boot.patient_count)})", reference)


def plot_confusion(y_true, y_pred, title: str):
    """Confusion matrix with counts and row shares, true classes down the side."""
    import seaborn as sns  # heavy: only where a confusion matrix is drawn

    counts = confusion_matrix(y_true, y_pred, labels=range(len(CLASSES)))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax = plt.subplots(figsize=(5.5, 4.5))[1]
    text = np.array([[f"{c}\n{s:.0%}" for c, s in zip(rc, rs)] for rc, rs in zip(counts, shares)])
    sns.heatmap(shares, annot=text, fmt="", cmap="Blues", vmin=0,
                xticklabels=CLASSES, yticklabels=CLASSES, ax=ax, cbar_kws={"label": "share of true class"})
    ax.set(title=title, xlabel="predicted class", ylabel="true class")
    return ax


def plot_class_report(y_true, y_pred, title: str):
    """Grouped bars of precision, recall and F1 per class."""
    report = class_report(y_true, y_pred)[["precision", "recall", "F1"]]
    ax = plt.subplots(figsize=(7, 3.8))[1]
    report.plot.bar(ax=ax, rot=0, ylim=(0, 1))
    ax.set(title=title, xlabel="class", ylabel="score")
    legend_outside(ax)
    ax.figure.tight_layout()
    return ax


def plot_trials(trials: pd.DataFrame, title: str = "Hyperband trials"):
    """Validation loss of every trial against its units, one colour per learning rate."""
    fig, ax = plt.subplots(figsize=(7, 4))
    done = trials.dropna(subset=["val_loss"])
    for rate, group in done.groupby("learning_rate"):
        ax.scatter(group["units"], group["val_loss"], s=30 + 30 * group["layers"], alpha=0.7, label=f"lr {rate:g}")
    ax.set(title=title, xlabel="units per dense layer (marker size: layers)", ylabel="best validation loss")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_otsu(steps: OtsuSteps, title: str):
    """Original, histogram with the threshold, mask and result, side by side."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    for ax, picture, name in zip(axes[[0, 2, 3]], (steps.image, steps.mask, steps.result),
                                 ("original", "mask: blurred < t", "mask applied")):
        ax.imshow(picture, cmap="gray")
        ax.set_title(name)
        ax.axis("off")
    axes[1].hist(steps.blurred.ravel(), bins=64, color="0.4")
    axes[1].axvline(steps.threshold, color="red", label=f"Otsu t = {steps.threshold:.3f}")
    axes[1].set(title="histogram of the blurred image", xlabel="gray value (0-1)", ylabel="pixels")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_native_resolution(shares: pd.DataFrame, kind: str):
    """Per class, the share of its images at each native size: stacked bars, the legend outside them."""
    ax = shares.plot.bar(stacked=True, figsize=(7, 3.5), rot=0, colormap="viridis")
    ax.set(ylabel="share of the class's images", title=f"Native resolution by class ({kind} data)")
    legend_outside(ax, handles=ax.get_legend_handles_labels()[0], labels=[f"{s} px" for s in shares.columns],
                   title="native size")
    ax.figure.tight_layout()
    return ax.figure
