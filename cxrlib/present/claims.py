"""A claim follows its interval: the words the book may use about a number, from its interval alone.

"Above", "below", "better" or "helps" appear only where the 95% interval of the difference (science.stats,
paired on the same patient resamples) excludes zero; otherwise the sentence says that the results are
indistinguishable on this many images from this many patients. A tie is a tie.
"""
from __future__ import annotations

import math

from cxrlib.science.stats import LEVEL, Interval

CHANCE_AUC = 0.5
METRIC_WORDS = {"Accuracy": "accuracy", "F1-macro": "macro F1", "ROC AUC": "macro ROC AUC", "FNFR": "FNFR"}
NOT_CHANCE = "not distinguishable from chance"


def number(value: float, decimals: int = 3) -> str:
    """A number as the pages print it ('–' where there is none)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def interval_text(found: Interval, decimals: int = 3, signed: bool = False, between: str = " to ") -> str:
    """'0.519 (0.361 to 0.602)': the estimate and its 95% interval ('+0.100 (−0.020 to +0.210)' when signed)."""
    shown = (lambda v: "–" if math.isnan(v) else f"{v:+.{decimals}f}".replace("-", "−")) if signed else (
        lambda v: number(v, decimals))
    if math.isnan(found.low):
        return shown(found.estimate)
    return f"{shown(found.estimate)} ({shown(found.low)}{between}{shown(found.high)})"


def units(images: int, patients: int, split: str = "test") -> str:
    """'82 test images from 62 patients': what every interval rests on."""
    return f"{images:,} {split} images from {patients:,} patient{'s' if patients != 1 else ''}"


def difference_word(found: Interval, where: str, above: str = "above", below: str = "below") -> str:
    """`above` or `below` where the difference's interval excludes zero, else 'indistinguishable on <where>'."""
    return {1: above, -1: below}.get(found.sign, f"indistinguishable on {where}")


def answer(found: Interval, where: str, yes: str = "yes", no: str = "no") -> str:
    """A report question's answer from the interval of the difference (a minus b): yes where it lies above 0,
    no where below, else "cannot tell on <where>"; the difference and its interval follow in brackets."""
    if found.estimate == found.low == found.high == 0:
        return "no difference: the two score the same in every resample"
    word = {1: yes, -1: no}.get(found.sign, f"cannot tell on {where}")
    return f"{word} (difference {interval_text(found, signed=True)})"


def chance_reading(auc: Interval) -> str:
    """NOT_CHANCE where the macro ROC AUC interval holds 0.5 (or the AUC is undefined), else ''."""
    return NOT_CHANCE if math.isnan(auc.estimate) or auc.holds(CHANCE_AUC) else ""


# ---------------------------------------------------------------- results tables with intervals

HEADLINE = ("Accuracy", "F1-macro", "ROC AUC", "FNFR")
READING = "reading"
# The bar each baseline sets: always answering the majority class scores well in accuracy on an imbalanced split;
# a guess with the training shares, and a model of the label file's fields, are read in macro F1.
def baseline_bar(name: str) -> str:
    """The metric on which a baseline (by its name) sets the bar a model must clear."""
    return "Accuracy" if name.startswith("always") else "F1-macro"


def range_text(found: Interval, decimals: int = 3) -> str:
    """'0.519 (0.361–0.602)': a metric's estimate and 95% interval, compact for table cells."""
    return interval_text(found, decimals, between="–")


def reading(boot, probs, baselines: dict) -> str:
    """What a model's intervals allow it to claim against chance and the baselines, in words ('' when it clears
    them all): each baseline is compared on the metric where it sets the bar, by the paired difference; the
    baselines it does not clear are named short (their name without its bracket), grouped by metric."""
    flags, short = [chance_reading(boot.interval(probs, "ROC AUC"))], {}
    for name, base in baselines.items():
        metric = baseline_bar(name)
        if boot.difference(probs, base, metric).sign <= 0:
            short.setdefault(metric, []).append(name.split(" (")[0])
    flags += [f"{METRIC_WORDS[metric]} not above {', '.join(names)}" for metric, names in short.items()]
    return "; ".join(flag for flag in flags if flag)


def results_table(boot, models: dict, report: dict | None = None, baselines: dict | None = None,
                  extra=None, metrics=HEADLINE):
    """Our models (name -> test probabilities), each with its metrics' 95% intervals and its reading, the
    report's row for it underneath (report: name -> report row name or None), then the trivial baselines.

    extra: a frame indexed by our names whose columns (loss, time, classes predicted) are shown as they are."""
    import pandas as pd

    from cxrlib.present.report import report_rows

    def cells(probs) -> dict:
        return {metric: range_text(found) for metric, found in boot.intervals(probs, metrics).items()}

    report, baselines = report or {}, baselines or {}
    rows = {}
    for name, probs in models.items():
        rows[name, "ours"] = {**cells(probs), **(extra.loc[name].to_dict() if extra is not None else {}),
                              READING: reading(boot, probs, baselines)}
        if report.get(name):
            theirs = report_rows(report[name]).iloc[0]
            rows[name, f"report ({report[name]})"] = {m: number(theirs[m], 4) for m in metrics}
    for name, probs in baselines.items():
        rows[name, "baseline"] = {**cells(probs), READING: ""}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["model", "source"]).fillna("")


def caption(boot, what: str = "test") -> str:
    """What every interval of a table rests on, in one sentence."""
    return (f"On {units(boot.images, boot.patient_count, what)}; each cell gives the estimate and its 95% interval "
            f"from {len(boot.weights):,} resamples of the patients. *{READING}* says where a model's interval does "
            f"not clear chance (ROC AUC 0.5) or a baseline that never sees a pixel (the paired difference on the same "
            f"resamples: accuracy against always answering the majority class, macro F1 against the others).")


def against_report(boot, probs, name: str, report_name: str, metrics=("Accuracy", "F1-macro", "ROC AUC")) -> str:
    """One sentence: each metric of ours, from its interval, above, below or indistinguishable from the report's."""
    from cxrlib.present.report import report_rows

    theirs = report_rows(report_name).iloc[0]
    where = units(boot.images, boot.patient_count)
    parts = [f"{METRIC_WORDS[metric]} {interval_text(boot.interval(probs, metric))} against {theirs[metric]:.4f}: "
             f"{difference_word(boot.against(probs, metric, theirs[metric]), 'these images')}" for metric in metrics]
    return f"**{name}** against the report's {report_name}, on {where}: " + "; ".join(parts) + "."


ANSWER = "here (test macro F1, a − b)"


def question_row(boot, question: str, probs_a, probs_b, theirs: str, metric: str = "F1-macro") -> dict:
    """One report question answered on our test split from the interval of a minus b, beside the report's answer."""
    where = units(boot.images, boot.patient_count)
    return {"question": question, "the report": theirs, ANSWER: answer(boot.difference(probs_a, probs_b, metric), where)}


def question_rows(boot, questions) -> list:
    """question_row of each (question, probs a, probs b, report row a, report row b), with the report's answer."""
    from cxrlib.present.report import report_answer

    return [question_row(boot, q, a, b, report_answer(ra, rb)) for q, a, b, ra, rb in questions]


def multiplicity_note(rows: list, level: float = LEVEL) -> str:
    """How many of several questions, each read at its own 95% level, would read yes or no by chance alone where no
    difference exists, beside how many did: one "yes" among many questions is weak evidence. '' for one question.

    >>> multiplicity_note([{ANSWER: "yes (difference +0.1)"}, {ANSWER: "cannot tell on here"}])
    'These are 2 questions, each read from its own 95% interval: where no difference exists, about 0.1 of them would still read yes or no by chance alone; 1 did here.'
    """
    if len(rows) < 2:
        return ""
    decided = sum(not row[ANSWER].startswith(("cannot tell", "no difference")) for row in rows)
    return (f"These are {len(rows)} questions, each read from its own {level:.0%} interval: where no difference "
            f"exists, about {(1 - level) * len(rows):.1f} of them would still read yes or no by chance alone; "
            f"{decided} did here.")


def weights_reading(weights, auc: dict) -> str:
    """Where each fitted ensemble puts its weight: the share on members not distinguishable from chance
    (weights: member x method; auc: member -> its test ROC AUC interval)."""
    at_chance = [member for member in weights.index if chance_reading(auc[member])]
    if not at_chance:
        return "Every member's test ROC AUC interval lies above 0.5."
    parts = [f"{method} puts {weights.loc[at_chance, method].sum():.2f} of its weight on them" for method in weights
             if not method.startswith("uniform")]
    return (f"Members {NOT_CHANCE} on the test split (their ROC AUC interval holds 0.5): {', '.join(at_chance)}; "
            + "; ".join(parts) + ". Weights fitted on a small validation split can favour such members by luck.")


def search_sentence(trials) -> str:
    """What a Hyperband search's validation losses say: a real choice, or a draw among trials at chance."""
    from cxrlib.science.tuning import all_at_chance, chance_loss

    losses = trials["val_loss"].dropna()
    spread = f"The {len(losses)} trials' best validation losses lie between {losses.min():.3f} and {losses.max():.3f}"
    if all_at_chance(trials):
        return (f"{spread}, all within 0.02 of chance (ln 4 = {chance_loss():.3f}, the loss of a model that gives "
                "every class 25%): no trial learned, so the 'best' configuration below is a draw, not a choice.")
    return f"{spread} (chance: ln 4 = {chance_loss():.3f})."


def summary(boot, probs: dict, val_scores, baselines: dict, questions=()) -> str:
    """A model chapter's closing bullets: its best on validation (test interval, reading) and its report questions."""
    from cxrlib.science.choice import choose

    best = choose(val_scores, list(probs))
    where = units(boot.images, boot.patient_count)
    read = reading(boot, probs[best], baselines)
    lines = [f"- {len(probs)} model{'s' * (len(probs) != 1)} on this page; chosen on validation: **{best}** "
             f"(validation macro F1 {val_scores[best]:.3f}); its test macro F1 "
             f"{interval_text(boot.interval(probs[best], 'F1-macro'))} on {where}" + (f"; {read}." if read else ".")]
    lines += [f"- {row['question']} Here: {row[ANSWER]}; the report: {row['the report']}." for row in questions]
    return "\n".join(lines)


def bullets(lines) -> str:
    """Sentences as a Markdown list (empty ones left out): a chapter's summary."""
    return "\n".join(f"- {line}" for line in lines if line)
