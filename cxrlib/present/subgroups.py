"""The subgroup chapter's page: rates and gaps as tables with intervals, the findings in words, and figures."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cxrlib.present.claims import interval_text, units
from cxrlib.present.plots import legend_below, wrapped
from cxrlib.science.stats import Interval
from cxrlib.science.subgroups import ATTRIBUTES, FNFR, MIN_IMAGES, MIN_PATIENTS

BASES = ("images of the class", "diseased images")  # what a recall's and the FNFR's n count
TOO_FEW = "too few to read"  # how a rate that rests on fewer than THRESHOLDS is marked


THRESHOLDS = (f"at least {MIN_IMAGES} images (diseased images for the FNFR, images of the class for a recall) "
              f"from at least {MIN_PATIENTS} effective patients")


def text(row, signed: bool = False) -> str:
    """A rate's or gap's '0.126 (0.075 to 0.177)' from its row (claims.interval_text)."""
    return interval_text(Interval(row["estimate"], row["low"], row["high"], row["empty"]), signed=signed)


def per_model(table: pd.DataFrame, keys: list, signed: bool = False) -> pd.DataFrame:
    """keys x model: each model's value with its interval, a star where a gap's interval excludes 0."""
    texts = table.assign(text=[text(row, signed) + (" *" if row.get("excludes 0") else "")
                               for _, row in table.iterrows()])
    wide = texts.pivot_table(index=keys, columns="model", values="text", aggfunc="first")
    rows = pd.MultiIndex.from_frame(table[keys].drop_duplicates())
    return wide.reindex(index=rows, columns=list(dict.fromkeys(table["model"]))).fillna("–").rename_axis(columns=None)


def rates_table(rates: pd.DataFrame, metric: str = FNFR) -> pd.DataFrame:
    """One metric: per attribute and group, the images and patients it rests on, each model's rate with its
    interval, the resamples in which the group was drawn empty, and whether it can be read."""
    mine = rates[rates["metric"] == metric]
    first = mine[mine["model"] == mine["model"].iloc[0]].set_index(["attribute", "group"])
    table = first[["images", "patients", "effective patients"]].join(per_model(mine, ["attribute", "group"]))
    reading = first["readable"].map({True: "read", False: TOO_FEW})
    return table.assign(**{"resamples empty": first["empty"], "reading": reading})


def gaps_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per attribute, metric and gap: each model's gap (a star where it excludes 0), and its resamples drawn empty."""
    if gaps.empty:
        return pd.DataFrame({"gaps": [f"none: no attribute has two groups that rest on {THRESHOLDS}"]},
                            index=pd.Index([""], name="attribute"))
    keys = ["attribute", "metric", "gap"]
    empty = gaps.drop_duplicates(keys).set_index(keys)["empty"].rename("resamples empty")
    return per_model(gaps, keys, signed=True).join(empty)


def findings_text(rates: pd.DataFrame, gaps: pd.DataFrame, test_images: int, patients: int) -> str:
    """Plain sentences: how much of the table can be read, and which FNFR gaps the intervals support."""
    first = rates[rates["model"] == rates["model"].iloc[0]]  # the counts, hence the reading, are every model's
    read, total = int(first["readable"].sum()), len(first)
    lines = [f"The test set holds {units(test_images, patients)}. Of the {total} rates per model "
             f"({first['metric'].nunique()} metrics by {first['group'].nunique()} groups), {read} rest on "
             f"{THRESHOLDS}; the others are marked *{TOO_FEW}* and stay out of the gaps."]
    fnfr = gaps[gaps["metric"] == FNFR]
    if len(fnfr):
        width = ((fnfr["high"] - fnfr["low"]) / 2).min()
        lines.append(f"The narrowest FNFR gap interval reaches ±{width:.2f} around its estimate: a true gap "
                     f"smaller than about {width:.2f} could not be told from 0 on this test set.")
    clear = fnfr[fnfr["excludes 0"]]
    if len(clear):
        lines.append("FNFR gaps whose 95% interval excludes 0:\n\n" + "\n".join(
            f"- {row['model']}: {row['attribute']}, {row['gap']}: {text(row, signed=True)}"
            for _, row in clear.iterrows()))
    elif len(fnfr):
        lines.append("No FNFR gap has a 95% interval that excludes 0: this test set cannot tell whether any "
                     "group is missed more often than another. That is not evidence that the rates are equal.")
    else:
        lines.append(f"No attribute has two groups whose FNFR rests on {THRESHOLDS}: this test set cannot "
                     f"compare any groups.")
    return "\n\n".join(lines)


NO_BASELINE = ("The labels-only model saved no predictions on this test split (synthetic images, or its chapter has "
               "not run: cxr run baseline), so there is nothing to agree with.")


def agreement_shown(table: pd.DataFrame | None) -> pd.DataFrame:
    """The shortcut check's table: agreement with the labels-only baseline, with the excess's interval."""
    if table is None:
        return pd.DataFrame({"agreement": [NO_BASELINE]}, index=pd.Index([""], name="model"))
    return table.assign(excess=[interval_text(found, signed=True) for found in table["excess"]])


def agreement_text(table: pd.DataFrame | None, images: int, patients: int) -> str:
    """What the excess agreement says, model by model, in the words its interval allows."""
    if table is None:
        return NO_BASELINE
    where, excess = units(images, patients), table["excess"]
    above, below = [m for m in excess.index if excess[m].sign > 0], [m for m in excess.index if excess[m].sign < 0]
    rest = [m for m in excess.index if m not in above + below]
    lines = [f"Excess agreement above 0, by its interval: {', '.join(above)}." if above else "",
             f"Below 0: {', '.join(below)}." if below else "",
             f"{'The others' if len(rest) < len(excess) else 'Every model'}: indistinguishable from answers that "
             f"follow the true class alone, on {where}." if rest else ""]
    if above:
        lines.append("The models above 0 answer the way the label file's fields lean more than the true classes "
                     "explain: a sign of a shortcut (or of findings that both the fields and the film show), to be "
                     "checked on a larger test set.")
    return " ".join(line for line in lines if line)


def group_label(row) -> str:
    """A group's tick label: its name, images and patients, and the warning when too few."""
    if not row["images"]:
        return f"{row['group']} (no images)"
    warning = "" if row["readable"] else f", {TOO_FEW}"
    return f"{row['group']} (n={row['images']}, {row['patients']} pat.{warning})"


def draw_rates(ax, rates: pd.DataFrame, models: list, metric: str) -> None:
    """One metric's rate per group (rows) and model (offset points), with intervals; too-few rates hollow."""
    rates = rates[rates["metric"] == metric]
    for k, model in enumerate(models):
        mine, colour = rates[rates["model"] == model].reset_index(drop=True), f"C{k}"
        y = np.arange(len(mine)) + (k - (len(models) - 1) / 2) * 0.25
        for i, row in mine.dropna(subset=["estimate"]).iterrows():
            err = [[max(row["estimate"] - row["low"], 0)], [max(row["high"] - row["estimate"], 0)]]
            ax.errorbar(row["estimate"], y[i], xerr=None if np.isnan(row["low"]) else err, fmt="o", capsize=3,
                        color=colour, mfc=colour if row["readable"] else "white", alpha=1 if row["readable"] else 0.45)
    first = rates[rates["model"] == models[0]]
    ax.set_yticks(range(len(first)), [group_label(row) for _, row in first.iterrows()])
    ax.set(xlim=(-0.03, 1.03), ylim=(len(first) - 0.5, -0.5), xlabel="rate (95% patient-bootstrap interval)")


def draw_gaps(ax, gaps: pd.DataFrame, models: list, metric: str) -> None:
    """One metric's gaps from the reference group, per model, with intervals and a line at 0."""
    mine = gaps[gaps["metric"] == metric]
    names = list(dict.fromkeys(mine["gap"]))
    ax.axvline(0, color="grey", linewidth=0.8)
    if not names:
        ax.text(0.5, 0.5, f"no gap:\nfewer than two groups\nwith {MIN_IMAGES}+ images from\n{MIN_PATIENTS}+ effective "
                f"patients", ha="center",
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
                             label=f"hollow: {TOO_FEW} (fewer than {MIN_IMAGES} images or "
                                   f"{MIN_PATIENTS} effective patients)")]
