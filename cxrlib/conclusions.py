"""The closing chapter's computed statement: where we stand against the report, and on what data."""
from __future__ import annotations

import pandas as pd

from cxrlib.config import REPORT_COUNTS
from cxrlib.report import BEST


def closing_statement(ours: pd.DataFrame, source, test_images: int, profile: str) -> str:
    """Plain sentences comparing our best model with the report's best ensemble, metric by metric."""
    if ours.empty:
        return "No model has been trained under this profile yet: run `cxr run` first."
    best = ours["F1-macro"].idxmax()
    lines = [f"Our best model by macro F1 is **{best}** (profile `{profile}`, {source.describe()}, "
             f"{test_images} test images)."]
    for metric, theirs in BEST.items():
        mine = ours.loc[best, metric]
        word = "above" if mine > theirs else "below"
        lines.append(f"- {metric}: {mine:.4f}, {word} the report's best {theirs:.4f} ({mine - theirs:+.4f}).")
    if source.synthetic:
        lines.append("These are **synthetic** images: the comparison with the report is meaningless.")
    elif source.kind == "sample":
        table = source.table
        small = f", {(table['orig_width'] == 64).mean():.0%} of them stored at 64 x 64 pixels" if "orig_width" in table else ""
        report_total = sum(sum(split.values()) for split in REPORT_COUNTS.values())
        lines.append(f"The real sample holds {len(table)} images{small}, against the report's {report_total:,} "
                     "full-resolution images; on this little data no model can be expected to reach the report's "
                     "numbers, and the test set's confidence intervals (ensemble chapter) are wide.")
    return "\n".join(lines)


def plot_best_vs_report(ours: pd.DataFrame):
    """Our best model (by macro F1) and the report's best ensemble, metric by metric."""
    best = ours["F1-macro"].idxmax()
    table = pd.DataFrame({f"ours: {best}": ours.loc[best, list(BEST)], "report: weighted average voting": pd.Series(BEST)})
    ax = table.plot.bar(figsize=(7, 3.8), rot=0, ylim=(0, 1))
    ax.set(title="Our best model against the report's best", xlabel="metric", ylabel="score (test set)")
    ax.legend(loc="lower right", fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
