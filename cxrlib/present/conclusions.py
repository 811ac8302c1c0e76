"""The closing chapter's words and tables, each computed from intervals: our best model (chosen on validation),
which family wins, whether the ensemble helps, what the test split can resolve, and where we stand against the
report. Every comparison reads the interval of a difference on the same patient resamples (science.stats)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import REPORT_COUNTS
from cxrlib.present.claims import (HEADLINE, METRIC_WORDS, READING, answer, baseline_bar, difference_word,
                                   interval_text, range_text, reading, results_table, units)
from cxrlib.present.report import BEST, REPORT, report_rows
from cxrlib.science.choice import choose
from cxrlib.science.stats import patients_needed, resolvable_difference

METRIC = "F1-macro"
FAMILY_BEST = "its best (on validation)"  # the family table's column naming each family's best model
# The report's own key differences in macro F1 (its published numbers): what each would need to be resolved.
REPORT_DIFFERENCES = {
    "weighted ensemble against its best member (CheXNet2)": ("Weighted average voting", "CheXNet2"),
    "weighted against plain average voting": ("Weighted average voting", "Average voting"),
    "fused network against the CNN from scratch": ("Fused", "CNN_from_scratch"),
    "Otsu preprocessing, CNN from scratch": ("No_prep_scratch", "Prep_scratch"),
}


def choice_sentence(candidates: list) -> str:
    """How our best model is chosen, generated from the very list of candidates the choice is made among."""
    ensembles = [key for key in candidates if key.startswith("ensemble/")]
    among = f", the {len(ensembles)} ensembles among them by their out-of-fold validation predictions" if ensembles else ""
    return (f"Our best model is the highest validation macro F1 among all {len(candidates)} models that saved "
            f"validation predictions{among}; the baselines do not compete. It is then reported on the test set: "
            f"picking the best of {len(candidates)} by their test scores would flatter the winner by luck.")


def best_model(found) -> str:
    """Our best model: the highest validation macro F1 (found: machinery.analysis.Gathered), by science.choice."""
    return choose(found.val_scores, list(found.families))


def ranked(found) -> dict:
    """Our models' test probabilities in validation order, best first (ties keep their saved order)."""
    return {key: found.test[key] for key in found.val_scores.sort_values(ascending=False, kind="stable").index}


def results(boot, found, metrics=None):
    """Our models in validation order, then the baselines: headline metrics with extra columns, or `metrics`."""
    extra = found.extra.join(found.val_scores.round(3)) if metrics is None else None
    return results_table(boot, ranked(found), baselines=found.baselines, extra=extra,
                         metrics=HEADLINE if metrics is None else metrics)


def family_table(boot, test: dict, val_scores, families: dict, report: dict | None = None,
                 baselines: dict | None = None) -> pd.DataFrame:
    """Each family's best model (chosen on validation), its test metrics with intervals, the report's row for it
    (report: name -> report row name or None), its difference in macro F1 from our best, and its reading
    against chance and the baselines."""
    best = choose(val_scores, list(families))
    rows = []
    for family in dict.fromkeys(families.values()):
        key = choose(val_scores, [k for k, f in families.items() if f == family])
        gap, theirs = boot.difference(test[key], test[best], METRIC), (report or {}).get(key)
        rows.append({"family": family, FAMILY_BEST: key,
                     "validation macro F1": f"{val_scores[key]:.3f}",
                     **{f"test {metric}": range_text(boot.interval(test[key], metric))
                        for metric in ("Accuracy", METRIC, "ROC AUC")},
                     "the report's row (macro F1)": f"{theirs}: {REPORT[theirs][3]:.4f}" if theirs else "none",
                     "against our best": "our best" if key == best else
                     f"{difference_word(gap, 'these images')} ({interval_text(gap, signed=True)})",
                     READING: reading(boot, test[key], baselines or {})})
    return pd.DataFrame(rows).set_index("family")


def family_verdict(table: pd.DataFrame, where: str) -> str:
    """Which family wins, in words: a family wins only where every other family's best lies below its own."""
    ours = table.index[table["against our best"] == "our best"][0]
    others = table.drop(index=ours)["against our best"]
    if len(others) and others.str.startswith("below").all():
        return f"**{ours}** wins: every other family's best lies below it on {where}."
    tied = [family for family, text in others.items() if not text.startswith("below")]
    return (f"No family wins on {where}: our best comes from **{ours}**, but it is indistinguishable from the best "
            f"of {', '.join(tied)}." if tied else f"Only one family has models: {ours}.")


def family_differences(boot, test: dict, table: pd.DataFrame) -> dict:
    """Each other family's best minus our best in test macro F1 (family -> the interval of the difference), for
    the forest plot beside the family table: a bar that crosses zero is a family not told apart from ours."""
    best = table.loc[table["against our best"] == "our best", FAMILY_BEST].iloc[0]
    return {family: boot.difference(test[key], test[best], METRIC)
            for family, key in table[FAMILY_BEST].items() if key != best}


def ensemble_question(boot, test: dict, val_scores, ensembles: list, members: list) -> str:
    """Does the ensemble help? The best ensemble against the best single member, both chosen on validation."""
    if not ensembles or not members:
        return "Does the ensemble help? No ensemble and member to compare: run the ensemble chapter."
    ensemble, member = choose(val_scores, ensembles), choose(val_scores, members)
    where = units(boot.images, boot.patient_count)
    return (f"Does the ensemble help? {answer(boot.difference(test[ensemble], test[member], METRIC), where)}: "
            f"**{ensemble}** against **{member}**, the best ensemble and the best single member "
            f"on validation, in test macro F1. The report: yes ({BEST[METRIC]:.4f} against CheXNet2's "
            f"{report_rows('CheXNet2').loc['CheXNet2', METRIC]:.4f}, no interval given).")


def resolution(boot, test: dict, keys: list) -> tuple:
    """(the smallest macro F1 difference our test split resolves with 80% power, the table of what the report's
    key differences would need), from the median spread of the paired differences between the models named."""
    spreads = [boot.spread(test[a], test[b], METRIC) for i, a in enumerate(keys) for b in keys[i + 1:]]
    spread = float(np.median(spreads)) if spreads else float("nan")
    per_patient = boot.images / boot.patient_count
    column = ("Accuracy", "Loss", "ROC AUC", METRIC).index(METRIC)
    rows = []
    for name, (a, b) in REPORT_DIFFERENCES.items():
        gap = REPORT[a][column] - REPORT[b][column]
        patients = patients_needed(spread, boot.patient_count, gap)
        rows.append({"the report's difference": name, "macro F1 difference": f"{gap:+.4f}",
                     "patients needed (about)": f"{patients:,.0f}",
                     "test images needed (about)": f"{patients * per_patient:,.0f}"})
    return resolvable_difference(spread), pd.DataFrame(rows).set_index("the report's difference")


def resolution_sentence(smallest: float, boot) -> str:
    """What the test split can resolve, in one sentence."""
    report_test = sum(REPORT_COUNTS["test"].values())
    return (f"On {units(boot.images, boot.patient_count)}, two of our models must differ by about **{smallest:.2f}** "
            f"in macro F1 before the interval of their difference excludes zero four times in five (80% power, "
            f"from the median spread of the paired differences). The report tested on {report_test:,} images; "
            f"the table gives, for a split like ours, roughly how many patients and images each of its key "
            f"differences would need.")


def closing_statement(best: str, boot, probs, val_score: float, limits=(), source=None,
                      chance: str = "", predicts: str = "") -> str:
    """Plain sentences on our best model (chosen on validation) against the report's best ensemble, each read
    from our interval, with every limit the run folder records; predicts: which classes it predicts
    (metrics.predicted_classes), said where not all, since an FNFR of 0 then only means it never says No Finding."""
    where = units(boot.images, boot.patient_count)
    lines = [f"Our best model is **{best}** (validation macro F1 {val_score:.3f}). On {where}:"]
    if predicts and not predicts.startswith("all "):
        never_normal = ("never" in predicts) == ("No Finding" in predicts)
        lines[0] += (f" it predicts {predicts.replace(': never', ' classes, never')}"
                     + (" (so its FNFR of 0 only means that it never predicts No Finding)" if never_normal else "")
                     + ". Its test numbers:")
    for metric, theirs in BEST.items():
        found = boot.interval(probs, metric)
        word = difference_word(boot.against(probs, metric, theirs), "these images")
        lines.append(f"- {METRIC_WORDS[metric]}: {interval_text(found)}; the report's best {theirs:.4f}: ours is {word}.")
    if chance:
        lines.append(f"\nIts macro ROC AUC is **{chance}**: its interval holds 0.5.")
    if limits:
        lines += ["\nWhat limited this build against the report's settings, as its run folder records it:\n",
                  *(f"- {factor}" for factor in limits), ""]
    else:
        lines.append("\nThe run folder records no setting below the report's.")
    if source is not None and source.synthetic:
        lines.append("These are **synthetic** images: the comparison with the report is meaningless.")
    return "\n".join(lines)


def baseline_counts(boot, test: dict, baselines: dict) -> list:
    """For each baseline: how many of our models lie above it, by the paired interval on its bar's metric."""
    lines = []
    for name, base in baselines.items():
        metric = baseline_bar(name)
        above = sum(boot.difference(probs, base, metric).sign > 0 for probs in test.values())
        lines.append(f"{above} of our {len(test)} models lie above **{name}** in {METRIC_WORDS[metric]}")
    return lines


def summary(best: str, boot, found, families: pd.DataFrame, smallest: float) -> str:
    """The chapter's closing bullets, each computed from this page's intervals."""
    where = units(boot.images, boot.patient_count)
    probs = found.test[best]
    report = "; ".join(f"{METRIC_WORDS[metric]} {difference_word(boot.against(probs, metric, value), 'these images')}"
                       for metric, value in BEST.items())
    return "\n".join([
        f"- Our best model, chosen on validation: **{best}**, test macro F1 "
        f"{interval_text(boot.interval(probs, METRIC))} on {where}.",
        f"- Against the report's best ensemble: {report}.",
        f"- {family_verdict(families, where)}",
        *(f"- {line}." for line in baseline_counts(boot, found.test, found.baselines)),
        *([f"- {report_against_labels_only(found.held_out)}"] if found.held_out is not None else []),
        f"- This test split resolves differences in macro F1 of about {smallest:.2f} and larger."])


def report_against_labels_only(held_out, metric: str = METRIC) -> str:
    """Would the report's best beat the labels-only baseline? Its published number against the baseline's interval
    on NIH's class-balanced held-out patients (the report's test set was nearly balanced); '' where not run."""
    if held_out is None:
        return ""
    row = held_out[(held_out["metric"] == metric) & held_out["test set"].str.contains("balanced")
                   & ~held_out["test set"].str.contains("without")].iloc[0]
    theirs = BEST[metric]
    word = "above" if theirs > row["high"] else "below" if theirs < row["low"] else "within"
    return (f"The report's best ensemble ({METRIC_WORDS[metric]} {theirs:.4f}, on its nearly balanced test set) lies "
            f"**{word}** the labels-only baseline's interval on NIH's class-balanced held-out patients: "
            f"{row['estimate']:.3f} ({row['low']:.3f}–{row['high']:.3f}) on {row['images']:,} images from "
            f"{row['patients']:,} patients.")
