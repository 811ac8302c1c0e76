"""The labels-only chapter's work: read NIH's label file, train the baseline on its fields (science.baseline), score
it on our test split and on held-out NIH patients, and save its predictions like any model's."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from threadpoolctl import threadpool_limits

from cxrlib.core.errors import DataError
from cxrlib.core.frames import predictions_frame
from cxrlib.machinery import runs
from cxrlib.machinery.inputs.sources import single_label
from cxrlib.science import baseline
from cxrlib.present.labels import metrics_row
from cxrlib.science.stats import Bootstrap

# Resamples of the held-out sets: thousands of images whose intervals are already tight, so 200 keep the
# (resamples x images) weights small; our test split uses the chapter's `bootstrap`.
HELD_OUT_RESAMPLES = 200
NAME = "labels_only"  # the name its predictions and metrics are saved under in the chapter's run folder


@dataclass
class Scored:
    """One test set: its name, its patient resamples (labels and patients) and each model's probabilities."""

    name: str
    boot: Bootstrap
    probs: dict


@dataclass
class LabelsOnly:
    """What the chapter shows: the baseline's own split of NIH's rows, its features, the validation score of
    each setting of the grid and the one chosen, the test sets, the fields' importance and the score without the
    patient's history."""

    rows: pd.DataFrame
    features: pd.DataFrame
    grid: pd.Series
    chosen: str
    tests: list
    importance: pd.DataFrame
    without_history: Scored
    ours_missing: int = 0  # images of our test split that NIH's file does not list (synthetic data)


def labels_only(ch) -> LabelsOnly:
    """Train, choose, score and save the baseline of one chapter (ch: its Chapter). One thread for the boosting:
    on a shared machine OpenMP's threads wait on each other for minutes."""
    nih = ch.nih_labels()
    if nih is None:  # refused in one line
        raise DataError("NIH's label file (Data_Entry_2017_v2020.csv.gz) was not found in data/nih-metadata or "
                        "CXR_NIH_METADATA: the labels-only baseline is trained on it")
    rows = single_label(nih)
    X, seed = baseline.features(nih), ch["seed"]
    split = baseline.split_rows(rows, ch.data.table, seed)
    part = {name: (X.loc[rows["Image Index"].astype(str)], rows["label"].to_numpy())
            for name, rows in split.groupby("split")}
    held = split[split["split"] == "test"]
    shown = baseline.balanced(held, seed)
    with threadpool_limits(1):
        chosen, model, grid = baseline.tune(*part["train"], *part["val"], seed)
        tests = [held_out(model, X, rows, name, part["train"][1], seed) for name, rows in (
            ("held-out NIH patients, natural class mix", held), ("held-out NIH patients, class-balanced", shown))]
        mine = ours(ch, model, X)
        importance = baseline.importance(model, X.loc[shown["Image Index"].astype(str)], shown["label"], seed)
        keep = [name for name in baseline.FEATURES if name not in baseline.HISTORY]
        lean = baseline.train(part["train"][0][keep], part["train"][1], baseline.settings(model), seed)
        without = held_out(lean, X[keep], shown, "held-out NIH patients, class-balanced, without the history "
                           "fields", part["train"][1], seed)
    save_held_out(ch, tests)
    return LabelsOnly(split, X, grid, chosen, ([mine] if mine else []) + tests, importance, without,
                      0 if mine else missing(ch, X))


HELD_OUT_FILE = "held_out.csv"


def save_held_out(ch, tests: list) -> None:
    """The baseline's intervals on the held-out NIH patients, kept for the conclusions."""
    rows = [{"test set": t.name, "metric": metric, **t.boot.interval(t.probs["labels only"], metric)._asdict(),
             "images": t.boot.images, "patients": t.boot.patient_count}
            for t in tests for metric in ("Accuracy", "F1-macro", "ROC AUC")]
    runs.write_csv(ch.run.file("tables", HELD_OUT_FILE), pd.DataFrame(rows))


def held_out(model, X, rows: pd.DataFrame, name: str, y_fit, seed: int) -> Scored:
    """The baseline, and the trivial baselines of its fit split's classes, scored on some of NIH's held-out rows."""
    probs, _ = baseline.probabilities(model, X.loc[rows["Image Index"].astype(str)])
    boot = Bootstrap(rows["label"], rows["Patient ID"], HELD_OUT_RESAMPLES, seed)
    return Scored(name, boot, {"labels only": probs, **baseline.trivial_baselines(y_fit, len(rows), seed)})


def missing(ch, X) -> int:
    """Images of our validation and test splits that NIH's label file does not list (synthetic images)."""
    ids = pd.concat([ch.data.split(name)["Image Index"] for name in ("val", "test")]).astype(str)
    return int((~ids.isin(X.index)).sum())


def ours(ch, model, X) -> Scored | None:
    """Our test split, on the chapter's resamples and trivial baselines, the baseline's predictions and metrics
    saved as any model's; None where NIH's file lacks some of our images."""
    if missing(ch, X):
        return None
    for split in ("val", "test"):
        rows = ch.data.split(split)
        probs, logits = baseline.probabilities(model, X.loc[rows["Image Index"].astype(str)])
        ch.run.save_predictions(NAME, split, predictions_frame(rows["Image Index"], rows["label"], probs, logits))
    ch.run.save_metrics(NAME, metrics_row(NAME, rows["label"], probs))
    return Scored("our test split", ch.bootstrap(), {"labels only": probs, **ch.baselines()})
