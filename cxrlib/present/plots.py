"""Figures shared by several chapters: class distributions, image grids, training curves."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.present.labels import DID_NOT_LEARN

# The book's one figure style: figures are drawn about 7.5 inches wide and shown at the column's width,
# so text is sized for that; tick labels never use an offset ("1e-5+1.386") or scientific notation.
BOOK_STYLE = {
    "figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (7.5, 3.8),
    "font.size": 10, "axes.titlesize": 11, "figure.titlesize": 12, "axes.labelsize": 10,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
    "axes.formatter.useoffset": False, "axes.formatter.limits": (-99, 99),
    "axes.spines.top": False, "axes.spines.right": False,
}


def use_book_style() -> None:
    """Apply the book's figure style to every later figure, and give each a text form saying what it shows."""
    plt.rcParams.update(BOOK_STYLE)
    describe_figures()


def figure_alt(fig) -> str:
    """What a figure shows, in words, for its alt text: its title, and its panels' titles where they differ."""
    def clean(text):
        return " ".join(str(text).split())

    title = clean(fig._suptitle.get_text()) if getattr(fig, "_suptitle", None) else ""
    names = [clean(ax.get_title()) for ax in fig.axes
             if getattr(ax, "_colorbar", None) is None and ax.get_visible()]  # colour bars and hidden axes aside
    panels = [name for name in dict.fromkeys(names) if name and name != title]
    if not title and panels:
        title, panels = panels[0], panels[1:]
    more = f" and {len(panels) - 6} more" if len(panels) > 6 else ""
    shown = f"; panels: {', '.join(panels[:6])}{more}" if panels else ""
    return f"Figure: {title or 'untitled'}{shown}"


def describe_figures() -> None:
    """A figure's text form in IPython (what a notebook keeps beside its image) becomes figure_alt: the book's
    build makes it the image's alt text (cxrlib.machinery.site.figure_alts). Set on the class as IPython's pretty-printing
    hook, because the inline backend removes every printer registered for Figure whenever it (re)configures."""
    from matplotlib.figure import Figure

    Figure._repr_pretty_ = lambda fig, printer, cycle: printer.text(figure_alt(fig))


def say_empty(message: str) -> None:
    """A sentence in place of a figure when a selection is empty (nothing is drawn, so the figure is None)."""
    from IPython.display import Markdown, display

    display(Markdown(f"*{message}*"))


def wrapped(title: str, width: int = 70) -> str:
    """A long title broken into lines that fit the book's column (no title runs off the figure)."""
    return "\n".join(textwrap.wrap(title, width)) or title


def short_lines(label: str) -> str:
    """A model's label for a narrow panel title: its last bracketed tag, such as '(no pretrained weights)', on a
    line of its own, so the tag is never broken apart."""
    head, bracket, tail = label.rpartition(" (")
    return f"{head}\n({tail}" if bracket else label


def epoch_ticks(ax, epochs) -> None:
    """Whole epochs on the x axis: every epoch when there are few, else whole numbers only."""
    epochs = sorted(set(int(e) for e in epochs))
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


# A loss axis never spans less than this: differences smaller than LOSS_SPAN (or a tenth of the loss itself)
# between epochs are within what reshuffling or reseeding a run moves, so an axis scaled below it would blow
# noise up into a curve (1.38630 to 1.38638 drawn as a slope).
LOSS_SPAN = 0.05
ONE_EPOCH_NOTE = "one epoch trained: each value is a single point, not a curve"


def _numbers(values) -> np.ndarray:
    """The finite numbers of a value, a sequence or a list of sequences (of any lengths), flat."""
    parts = values if isinstance(values, (list, tuple)) else [values]
    flat = [np.asarray(pd.to_numeric(pd.Series(np.ravel(np.asarray(v, dtype=object))), errors="coerce"), float)
            for v in parts]
    flat = np.concatenate(flat) if flat else np.array([])
    return flat[np.isfinite(flat)]


def noise_span(values) -> float:
    """The smallest span a loss axis may have for these values (LOSS_SPAN, or a tenth of their level)."""
    values = _numbers(values)
    level = float(np.median(np.abs(values))) if len(values) else 0.0
    return max(LOSS_SPAN, 0.1 * level)


def loss_axis(ax, values) -> None:
    """Scale a loss axis no finer than the run's noise (noise_span), with at most five ticks of two decimals."""
    span_axis(ax, values, noise_span(values))


# A score axis (accuracy, macro F1 in [0, 1]) never spans less: on validation sets of a few dozen images, a
# handful of images moves a score by that much.
SCORE_SPAN = 0.1


def score_axis(ax, values) -> None:
    """Scale an axis of scores in [0, 1] no finer than SCORE_SPAN, within [0, 1]."""
    span_axis(ax, values, SCORE_SPAN, high=1.0)


def span_axis(ax, values, floor: float, high=None) -> None:
    """The y axis around the finite values, spanning at least floor (within 0 and high), with at most five ticks."""
    from matplotlib.ticker import MaxNLocator

    values = _numbers(values)
    if not len(values):
        return
    least, most = float(np.min(values)), float(np.max(values))
    span = max(most - least, floor) * 1.16
    bottom = max((least + most) / 2 - span / 2, 0.0)
    if high is not None:
        span = min(span, high)  # at most the whole scale
        bottom = min(bottom, high - span)
    ax.set_ylim(bottom, bottom + span)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))


def single_points(epochs) -> bool:
    """Whether a history holds one epoch only (drawn as points with ONE_EPOCH_NOTE, never as a line)."""
    return len(set(int(e) for e in epochs)) <= 1


def legend_outside(ax, **kwargs):
    """A legend right of the axes, never over the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def legend_below(fig, **kwargs):
    """One legend for a whole figure, centred under its panels (leave room there), never over a curve."""
    return fig.legend(loc="lower center", frameon=False, **{"ncols": 1, **kwargs})


use_book_style()


def plot_split_distribution(counts: pd.DataFrame, title: str = "Class distribution per split"):
    """One bar chart per split with counts and proportions, as the report's figures 1-3."""
    fig, axes = plt.subplots(1, len(counts.columns), figsize=(2.6 * len(counts.columns), 3.4), sharey=False)
    for ax, split in zip(np.atleast_1d(axes), counts.columns):
        values = counts[split]
        bars = ax.bar(range(len(values)), values, color=plt.cm.tab10.colors[:len(values)])
        share = values / max(values.sum(), 1)
        ax.bar_label(bars, labels=[f"{v}\n{s:.0%}" for v, s in zip(values, share)], fontsize=8)
        ax.set_xticks(range(len(values)), values.index, rotation=30, ha="right")
        ax.set(title=f"{split} ({values.sum()} images)", xlabel="class", ylabel="images")
        ax.margins(y=0.25)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_image_grid(images, titles, title: str, columns: int = 4, empty: str = ""):
    """Images in a grid with a caption each; for no images, a sentence instead of a blank figure (None)."""
    if not len(images):
        return say_empty(empty or f"{title}: no image to show.")
    columns = min(columns, len(images))
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.45 * rows), squeeze=False)  # room for two-line titles
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        ax.imshow(np.asarray(image), cmap="gray")
        ax.set_title(caption, fontsize=9)
    fig.suptitle(wrapped(title))
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, title: str):
    """Loss and accuracy for training and validation, by epoch; the title says so when the model did not learn."""
    from cxrlib.science.training import did_not_learn

    if history.empty:
        return say_empty(f"{title}: no training history was recorded.")
    title = f"{title} ({DID_NOT_LEARN})" if did_not_learn(history) else title
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4))
    epochs = history.get("epoch", pd.Series(range(len(history)))) + 1
    points = single_points(epochs)  # one epoch: points and a note, not a line between two dots
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style, name in (("", "-o", "training"), ("val_", "--s", "validation")):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], style[-1] if points else style, ms=6 if points else 3,
                        label=name)
        ax.set(title=metric, xlabel="epoch", ylabel=metric)
        epoch_ticks(ax, epochs)
        if metric == "loss":
            loss_axis(ax, [history[c] for c in ("loss", "val_loss") if c in history])
        else:
            ax.set_ylim(0, 1)  # accuracy: the whole scale, so a few images' change stays small
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(wrapped(title))
    bottom = (0.07 if handles else 0) + (0.06 if points else 0)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    if handles:  # below the plots, clear of the title and the data
        legend_below(fig, handles=handles, labels=labels, bbox_to_anchor=(0.5, 0.06 if points else 0), ncols=2)
    if points:
        fig.text(0.5, 0.01, ONE_EPOCH_NOTE, ha="center", va="bottom", fontsize=9, style="italic")
    return fig


def class_examples(table: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """A few rows of each class, reproducibly, for image galleries."""
    parts = [table[table["label"] == k].sample(min(per_class, int((table["label"] == k).sum())),
                                               random_state=seed) for k in range(len(CLASSES))]
    return pd.concat(parts)


def plot_histories(histories: dict, metric: str = "val_loss", title: str = "Validation loss by epoch"):
    """One curve per model, to compare how a family of variants trained."""
    drawn = {name: h for name, h in histories.items() if metric in h}
    if not drawn:
        return say_empty(f"{title}: no model recorded {metric}.")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    singles = [name for name, history in drawn.items() if single_points(history["epoch"])]
    for name, history in drawn.items():
        ax.plot(history["epoch"] + 1, history[metric], "o" if name in singles else "-o",
                ms=6 if name in singles else 3, label=name)
    ax.set(title=wrapped(title, 60), xlabel="epoch", ylabel=metric)
    epoch_ticks(ax, pd.concat([h["epoch"] for h in drawn.values()]) + 1)
    if "loss" in metric:
        loss_axis(ax, [h[metric] for h in drawn.values()])
    legend_outside(ax, fontsize=8)
    if singles:
        note = ONE_EPOCH_NOTE if len(singles) == len(drawn) else f"{', '.join(singles)}: {ONE_EPOCH_NOTE}"
        fig.text(0.01, 0.01, wrapped(note, 110), ha="left", va="bottom", fontsize=9, style="italic")
    fig.tight_layout(rect=(0, 0.06 if singles else 0, 1, 1))
    return fig


def plot_grouped_bars(table: pd.DataFrame, title: str, xlabel: str, xlim=None):
    """Horizontal bars, one group per row (names on two lines where tagged), one colour per column, legend outside."""
    if table.empty:
        return say_empty(f"{title}: nothing to show.")
    shown = table.iloc[::-1].rename(index=lambda name: short_lines(str(name)))
    ax = shown.plot.barh(figsize=(7.5, 0.22 * table.shape[1] * len(table) + 1.5), xlim=xlim)
    ax.set(title=wrapped(title, 60), xlabel=xlabel, ylabel="model")
    legend_outside(ax)
    ax.figure.tight_layout()
    return ax.figure
