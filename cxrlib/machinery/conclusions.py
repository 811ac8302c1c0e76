"""The closing chapter's computed statement: where we stand against the report, and on what data."""
from __future__ import annotations

import pandas as pd

from cxrlib.core.config import REPORT_COUNTS
from cxrlib.present.labels import limiting_factors
from cxrlib.present.report import BEST
from cxrlib.science.metrics import PREDICTED, macro_f1


WHY = ("It is chosen by validation macro F1, not test F1: picking the best of some twenty models on the test "
       "set would flatter it by luck, and the test set must stay an independent check.")


def validation_scores(val_predictions: dict) -> pd.Series:
    """'chapter/model' -> macro F1 on the validation set, for every model that saved validation predictions."""
    return pd.Series({key: macro_f1(frame["label"], frame["pred"]) for key, frame in val_predictions.items()},
                     name="validation macro F1", dtype=float)


def choose_best(val_scores: pd.Series, tested: pd.DataFrame) -> str:
    """Our best: the highest validation macro F1 among models with test metrics (ties: first by name)."""
    scores = val_scores[val_scores.index.isin(tested.index)].dropna()
    if scores.empty:
        raise ValueError("no model has both validation predictions and test metrics; run the model chapters first")
    return scores.sort_index().idxmax()


def recorded_limits(infos: dict) -> list:
    """Every limiting factor (labels.limiting_factors) that any chapter's chapter.json records, in first-seen order."""
    factors = (factor for info in infos.values()
               for factor in limiting_factors(info.get("settings", {}), info.get("source"), info.get("weights") or None))
    return list(dict.fromkeys(factors))  # each once, in first-seen order


def closing_statement(ours: pd.DataFrame, source, test_images: int, profile: str, val_scores: pd.Series,
                      limits=()) -> str:
    """Plain sentences comparing our best model (chosen on validation) with the report's best ensemble, and
    every limit the run folder records (limits: recorded_limits of the chapters' infos)."""
    if ours.empty or val_scores.dropna().empty:
        return "No model has been trained under this profile yet: run `cxr run` first."
    best = choose_best(val_scores, ours)
    lines = [f"Our best model is **{best}** (validation macro F1 {val_scores[best]:.4f}; profile `{profile}`, "
             f"{source.describe()}, {test_images} test images). {WHY} Its test numbers:"]
    predicts = ours.loc[best, PREDICTED] if PREDICTED in ours else None
    if isinstance(predicts, str) and not predicts.startswith("all "):  # what a perfect-looking FNFR really means
        never_normal = ("never" in predicts) == ("No Finding" in predicts)
        why = " (so its FNFR of 0 only means that it never predicts No Finding)" if never_normal else ""
        lines[0] = lines[0].replace(" Its test numbers:", f" On the test set it predicts "
                                    f"{predicts.replace(': never', ' classes, never')}{why}. Its test numbers:")
    for metric, theirs in BEST.items():
        mine = ours.loc[best, metric]
        word = "above" if mine > theirs else "below"
        lines.append(f"- {metric}: {mine:.4f}, {word} the report's best {theirs:.4f} ({mine - theirs:+.4f}).")
    if limits:
        lines.append("\nWhat limited this build against the report's settings, as its run folder records it:\n")
        lines += [f"- {factor}" for factor in limits]
        lines.append("")
    else:
        lines.append("\nThe run folder records no setting below the report's.")
    if source.synthetic:
        lines.append("These are **synthetic** images: the comparison with the report is meaningless.")
    elif source.kind == "sample":
        table = source.table
        small = f", {(table['orig_width'] == 64).mean():.0%} of them stored at 64 x 64 pixels" if "orig_width" in table else ""
        report_total = sum(sum(split.values()) for split in REPORT_COUNTS.values())
        lines.append(f"The real sample holds {len(table)} images{small}, against the report's {report_total:,} "
                     "full-resolution images, so the test set's confidence intervals (ensemble chapter) are wide.")
    return "\n".join(lines)


def plot_best_vs_report(ours: pd.DataFrame, val_scores: pd.Series):
    """Our best model (chosen by validation macro F1) and the report's best ensemble, metric by metric, on test."""
    best = choose_best(val_scores, ours)
    table = pd.DataFrame({f"ours: {best}": ours.loc[best, list(BEST)], "report: weighted average voting": pd.Series(BEST)})
    ax = table.plot.bar(figsize=(7.5, 4.2), rot=0, ylim=(0, 1))
    ax.set(title="Our best model (chosen on validation) against the report's best", xlabel="metric",
           ylabel="score (test set)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=1, frameon=False)  # below the bars
    ax.figure.tight_layout()
    return ax.figure
