"""What every chapter's page shows around its own story, from plain values the Chapter gathers: the summary box
with its provenance, the results on the test split, the closing summary and the report's questions."""
from __future__ import annotations

import pandas as pd

from cxrlib.core.config import REPORT_COUNTS
from cxrlib.present import claims
from cxrlib.present.dataset import SYNTHETIC_WARNING


def counts_text(table: pd.DataFrame) -> str:
    """How many images and patients each split of a data table ('split', 'Patient ID') used, in words."""
    images, patients = table["split"].value_counts(), table.groupby("split")["Patient ID"].nunique()
    split_text = ", ".join(f"{s} {images.get(s, 0)} from {patients.get(s, 0)}" for s in ("train", "val", "test"))
    return f"{len(table)} images of {table['Patient ID'].nunique()} patients ({split_text})"


def provenance_text(profile: str, data: str, counts: str, changed: str, versions: str, lock: str, identity: str,
                    device: str, commit: str) -> str:
    """The chapter's full provenance as one Markdown line (collapsed under the summary box)."""
    return (f"**Provenance.** Profile `{profile}` · data: {data}, used {counts} · parameters: {changed} · "
            f"{versions} · {lock} · identity `{identity}` · device: {device} · commit `{commit}`")


def synthetic_banner() -> str:
    """A red box no reader can miss."""
    return ('<div style="border:3px solid #c00;background:#fee;padding:0.8em;font-weight:bold;color:#900">'
            f"&#9888; {SYNTHETIC_WARNING}</div>")


def with_banner(box: str, synthetic: bool) -> str:
    """The summary box (labels.summary_box), the synthetic-data banner atop its list where the data are synthetic."""
    return box.replace("<ul>", synthetic_banner() + "<ul>", 1) if synthetic else box


def report_training_note() -> str:
    """What the report trained on, beside every comparison with its numbers: our runs use far fewer images."""
    return f"The report trained on about {round(sum(REPORT_COUNTS['train'].values()), -3):,} full-resolution images."


def against_report_text(boot, probs: dict, report: dict) -> str:
    """A sentence per model with a report row (report: name -> row or None), then the report's size; or ''."""
    sentences = [claims.against_report(boot, p, name, report[name]) for name, p in probs.items() if report[name]]
    return "\n\n".join([*sentences, report_training_note()]) if sentences else ""


def show_results(boot, probs: dict, report: dict, baselines: dict, extra: pd.DataFrame) -> None:
    """The results on the test split: the caption, the headline table (with extra's columns), the per-class F1
    table, the forest of macro F1 intervals, and a sentence per report comparison."""
    from IPython.display import Markdown, display

    from cxrlib.present.figures import plot_f1_forest
    from cxrlib.science.metrics import F1_COLUMNS

    display(Markdown(claims.caption(boot)))
    display(claims.results_table(boot, probs, report, baselines, extra))
    display(claims.results_table(boot, probs, report, baselines, metrics=F1_COLUMNS))
    plot_f1_forest(boot, {**probs, **baselines})
    text = against_report_text(boot, probs, report)
    if text:
        display(Markdown(text))


def show_questions(rows: list) -> None:
    """The table of report questions (claims.question_rows), and what chance alone answers among them."""
    from IPython.display import Markdown, display

    display(pd.DataFrame(rows).set_index("question"))
    note = claims.multiplicity_note(rows)  # empty for a single question
    if note:
        display(Markdown(note))


def show_summary(boot, probs: dict, val_scores, baselines: dict, questions: list) -> None:
    """A model chapter's closing summary (claims.summary): its best on validation, and its report questions."""
    from IPython.display import Markdown, display

    display(Markdown(claims.summary(boot, probs, val_scores, baselines, questions)))
