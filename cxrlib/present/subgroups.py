"""The subgroup chapter's page: rates and gaps as tables with intervals, the findings in words, and figures."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cxrlib.present.plots import legend_below, wrapped
from cxrlib.science.subgroups import ATTRIBUTES, BASES, FNFR, MIN_IMAGES, TOO_FEW


def interval_text(estimate: float, low: float, high: float, signed: bool = False) -> str:
    """'0.126 (0.075 to 0.177)', signed for gaps; a dash where there is no value."""
    if np.isnan(estimate):
        return "–"
    form = "{:+.3f}" if signed else "{:.3f}"
    bounds = "" if np.isnan(low) else f" ({form.format(low)} to {form.format(high)})"
    return form.format(estimate) + bounds


def rates_table(rates: pd.DataFrame, metric: str = FNFR) -> pd.DataFrame:
    """One metric: per attribute and group, the images it rests on, each model's rate with its interval, and
    whether it can be read."""
    mine = rates[rates["metric"] == metric]
    first = mine[mine["model"] == mine["model"].iloc[0]].set_index(["attribute", "group"])
    table = pd.DataFrame({"images": first["images"]})
    for model, rows in mine.groupby("model", sort=False):
        rows = rows.set_index(["attribute", "group"])
        table[model] = [interval_text(*values) for values in rows[["estimate", "low", "high"]].to_numpy()]
    table["reading"] = first["reading"].replace("", "read")
    return table


def gaps_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per attribute, metric and gap: each model's gap with its interval (a star where it excludes 0)."""
    if gaps.empty:
        return pd.DataFrame({"gaps": [f"none: no attribute has two groups whose rates rest on {MIN_IMAGES} or "
                                      f"more images"]}, index=pd.Index([""], name="attribute"))
    texts = gaps.assign(text=[interval_text(e, lo, hi, signed=True) + (" *" if x else "")
                              for e, lo, hi, x in gaps[["estimate", "low", "high", "excludes 0"]].to_numpy()])
    order = list(dict.fromkeys(gaps["model"]))
    keys = ["attribute", "metric", "gap"]
    table = texts.pivot_table(index=keys, columns="model", values="text", aggfunc="first")
    rows = pd.MultiIndex.from_frame(gaps[keys].drop_duplicates())
    return table.reindex(index=rows, columns=order).fillna("–").rename_axis(columns=None)


def findings_text(rates: pd.DataFrame, gaps: pd.DataFrame, test_images: int, patients: int) -> str:
    """Plain sentences: how much of the table can be read, and which FNFR gaps the intervals support."""
    first = rates[rates["model"] == rates["model"].iloc[0]]  # the counts, hence the reading, are every model's
    read, total = int((first["reading"] == "").sum()), len(first)
    lines = [f"The test set holds {test_images} images of {patients} patients. Of the {total} rates per model "
             f"(five metrics by {rates['group'].nunique()} groups), {read} rest on {MIN_IMAGES} or more images; "
             f"the others are marked *{TOO_FEW}* and stay out of the gaps."]
    widths = ((gaps["high"] - gaps["low"]) / 2)[gaps["metric"] == FNFR]
    if len(widths):
        lines.append(f"The narrowest FNFR gap interval reaches ±{widths.min():.2f} around its estimate: a true gap "
                     f"smaller than about {widths.min():.2f} could not be told from 0 on this test set.")
    clear = gaps[(gaps["metric"] == FNFR) & gaps["excludes 0"]]
    if len(clear):
        lines.append("FNFR gaps whose 95% interval excludes 0:\n\n" + "\n".join(
            f"- {row.model}: {row.attribute}, {row.gap}: {row.estimate:+.3f} (95% interval {row.low:+.3f} to "
            f"{row.high:+.3f})" for row in clear.itertuples()))
    elif len(gaps[gaps["metric"] == FNFR]):
        lines.append("No FNFR gap has a 95% interval that excludes 0: this test set cannot tell whether any "
                     "group is missed more often than another. That is not evidence that the rates are equal.")
    else:
        lines.append("No attribute has two groups with enough diseased images for an FNFR gap: this test set "
                     "cannot compare any groups.")
    return "\n\n".join(lines)


def group_label(row) -> str:
    """A group's tick label: its name and count, and the warning when too few."""
    if not row["images"]:
        return f"{row['group']} (no images)"
    warning = f", {TOO_FEW}" if row["reading"] else ""
    return f"{row['group']} (n={row['images']}{warning})"


def draw_rates(ax, rates: pd.DataFrame, models: list, metric: str) -> None:
    """One metric's rate per group (rows) and model (offset points), with intervals; too-few rates hollow."""
    rates = rates[rates["metric"] == metric]
    for k, model in enumerate(models):
        mine, colour = rates[rates["model"] == model].reset_index(drop=True), f"C{k}"
        y = np.arange(len(mine)) + (k - (len(models) - 1) / 2) * 0.25
        for i, row in mine.dropna(subset=["estimate"]).iterrows():
            err = [[max(row["estimate"] - row["low"], 0)], [max(row["high"] - row["estimate"], 0)]]
            ax.errorbar(row["estimate"], y[i], xerr=None if np.isnan(row["low"]) else err, fmt="o", capsize=3,
                        color=colour, mfc="white" if row["reading"] else colour, alpha=0.45 if row["reading"] else 1)
    first = rates[rates["model"] == models[0]]
    ax.set_yticks(range(len(first)), [group_label(row) for _, row in first.iterrows()])
    ax.set(xlim=(-0.03, 1.03), ylim=(len(first) - 0.5, -0.5), xlabel="rate (95% patient-bootstrap interval)")


def draw_gaps(ax, gaps: pd.DataFrame, models: list, metric: str) -> None:
    """One metric's gaps from the reference group, per model, with intervals and a line at 0."""
    mine = gaps[gaps["metric"] == metric]
    names = list(dict.fromkeys(mine["gap"]))
    ax.axvline(0, color="grey", linewidth=0.8)
    if not names:
        ax.text(0.5, 0.5, f"no gap:\nfewer than two groups\nwith {MIN_IMAGES} or more images", ha="center",
                va="center", transform=ax.transAxes, fontsize=9, bbox={"facecolor": "white", "edgecolor": "none"})
        ax.set(yticks=[], xlim=(-1, 1), title="gap")
        return
    for k, model in enumerate(models):
        rows = mine[mine["model"] == model].set_index("gap").reindex(names)
        y = np.arange(len(names)) + (k - (len(models) - 1) / 2) * 0.25
        err = [np.maximum(rows["estimate"] - rows["low"], 0), np.maximum(rows["high"] - rows["estimate"], 0)]
        ax.errorbar(rows["estimate"], y, xerr=err, fmt="s", capsize=3, color=f"C{k}")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlim=(-1.03, 1.03), ylim=(len(names) - 0.5, -0.5), title="gap", xlabel="difference (95% interval)")


def plot_attribute(rates: pd.DataFrame, gaps: pd.DataFrame, metrics, attributes, title: str):
    """Rows: (attribute, metric) pairs; left the rate per group, right the gaps from the reference group."""
    models = list(dict.fromkeys(rates["model"]))
    pairs = [(a, m) for a in attributes for m in metrics]
    heights = [max(len(ATTRIBUTES[a][1]), 2) * 0.38 + 0.9 for a, _ in pairs]
    fig, axes = plt.subplots(len(pairs), 2, figsize=(7.5, sum(heights) + 1.2), squeeze=False,
                             gridspec_kw={"height_ratios": heights, "width_ratios": (1.25, 1)})
    for (attribute, metric), (left, right) in zip(pairs, axes):
        draw_rates(left, rates[rates["attribute"] == attribute], models, metric)
        draw_gaps(right, gaps[gaps["attribute"] == attribute], models, metric)
        left.set_title(f"{metric} by {attribute}\n(n: {BASES[metric == FNFR]})")
    legend_below(fig, handles=legend_handles(models))
    fig.suptitle(wrapped(title))
    fig.tight_layout(rect=(0, (0.25 * len(models) + 0.4) / fig.get_figheight(), 1, 1))
    return fig


def legend_handles(models: list) -> list:
    """One marker per model, and the hollow marker of a rate too few to read."""
    handles = [Line2D([], [], marker="o", color=f"C{k}", linestyle="", label=model) for k, model in enumerate(models)]
    return handles + [Line2D([], [], marker="o", color="grey", mfc="white", linestyle="",
                             label=f"hollow: {TOO_FEW} (fewer than {MIN_IMAGES} images)")]
