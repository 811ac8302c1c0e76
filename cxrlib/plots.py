"""Figures shared by several chapters: class distributions, image grids, training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrlib.config import CLASSES


def plot_split_distribution(counts: pd.DataFrame, title: str = "Class distribution per split"):
    """One bar chart per split with counts and proportions, as the report's figures 1-3."""
    fig, axes = plt.subplots(1, len(counts.columns), figsize=(4.2 * len(counts.columns), 3.6), sharey=False)
    for ax, split in zip(np.atleast_1d(axes), counts.columns):
        values = counts[split]
        bars = ax.bar(range(len(values)), values, color=plt.cm.tab10.colors[:len(values)])
        share = values / max(values.sum(), 1)
        ax.bar_label(bars, labels=[f"{v}\n{s:.0%}" for v, s in zip(values, share)], fontsize=8)
        ax.set_xticks(range(len(values)), values.index, rotation=20)
        ax.set(title=f"{split} ({values.sum()} images)", xlabel="class", ylabel="images")
        ax.margins(y=0.25)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_image_grid(images, titles, title: str, columns: int = 4, cmap="gray"):
    """Images in a grid with a caption each; an empty grid draws a note instead of failing."""
    n = max(len(images), 1)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        ax.imshow(np.asarray(image), cmap=cmap)
        ax.set_title(caption, fontsize=8)
    if not len(images):
        axes.flat[0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, title: str):
    """Loss and accuracy for training and validation, by epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if history.empty:
        axes[0].text(0.5, 0.5, "no history recorded", ha="center")
    epochs = history.get("epoch", pd.Series(range(len(history)))) + 1
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], style, ms=3, label=(prefix or "train_") + metric)
        ax.set(title=f"{title}: {metric}", xlabel="epoch", ylabel=metric)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_metric_bars(table: pd.DataFrame, columns, title: str):
    """Horizontal grouped bars comparing models (rows) on a few metrics, readable for long model names."""
    ax = table[list(columns)].iloc[::-1].plot.barh(figsize=(9, 0.22 * len(columns) * len(table) + 1.5))
    ax.set(title=title, xlabel="score (test set)", ylabel="model", xlim=(0, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    ax.figure.tight_layout()
    return ax.figure


def class_examples(table: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """A few rows of each class, reproducibly, for image galleries."""
    parts = [table[table["label"] == k].sample(min(per_class, int((table["label"] == k).sum())),
                                               random_state=seed) for k in range(len(CLASSES))]
    return pd.concat(parts)


def plot_histories(histories: dict, metric: str = "val_loss", title: str = "Validation loss by epoch"):
    """One curve per model, to compare how a family of variants trained."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, history in histories.items():
        if metric in history:
            ax.plot(history["epoch"] + 1, history[metric], "-o", ms=3, label=name)
    ax.set(title=title, xlabel="epoch", ylabel=metric)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig
