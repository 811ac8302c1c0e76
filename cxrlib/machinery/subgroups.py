"""What the subgroups chapter reads: the models it examines, each chosen on validation by science.choice, their
test predictions, the test split's people (with NIH's label file where our rows lack its fields) and the
labels-only baseline's test predictions for the shortcut check."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cxrlib.machinery import analysis
from cxrlib.machinery.runs import prediction_files
from cxrlib.science import subgroups
from cxrlib.machinery.baseline import NAME as BASELINE
from cxrlib.science.choice import choose, validation_scores
from cxrlib.present.labels import ensemble_name
from cxrlib.science.ensemble import METHODS


@dataclass
class Examined:
    """The models the chapter reads and the people of the test split."""

    report: analysis.Chosen  # the report's five models, each its best saved version on validation
    roles: pd.DataFrame  # role -> the model shown and the key it is saved under
    test: dict  # 'role: model' -> test predictions (the chosen model and the best ensemble)
    every: dict  # display label -> test predictions of every report model and the best ensemble
    people: pd.DataFrame  # demographics of the test split
    baseline: pd.DataFrame | None  # the labels-only baseline's test predictions (None: its chapter has not run)


def best_ensemble(ch) -> str | None:
    """The ensemble with the best validation macro F1 among those that saved validation predictions (preferring
    average voting, fitted on nothing, among equals); without any, the report's GA ensemble if it saved test
    predictions; else None."""
    saved = prediction_files(ch.profile, "val", ch.runs_root)
    keys = [key for key in [*(f"ensemble/{name}" for name in METHODS), *sorted(saved)]
            if key in saved and key.startswith("ensemble/")]
    if keys:
        return choose(validation_scores(ch.predictions(list(dict.fromkeys(keys)), "val")))
    return "ensemble/ga" if "ensemble/ga" in prediction_files(ch.profile, "test", ch.runs_root) else None


def examined(ch) -> Examined:
    """Choose on validation (science.choice), then read the test predictions and the people."""
    report = analysis.choose_report_models(ch)
    label = choose(report.choice["validation macro F1"].set_axis(list(report.keys)))
    keys = {"chosen model": (report.labels[label], report.keys[label])}
    ensemble = best_ensemble(ch)
    if ensemble:
        keys["best ensemble"] = (analysis.display_label(ensemble_name(ensemble), ensemble, ch.weights), ensemble)
    frames = ch.predictions(list(dict.fromkeys([*report.keys.values(), *(key for _, key in keys.values())])))
    roles = pd.DataFrame({"model": [shown for shown, _ in keys.values()], "saved as": [k for _, k in keys.values()]},
                         index=pd.Index(list(keys), name="role"))
    test = {f"{role}: {shown}": frames[key] for role, (shown, key) in keys.items()}
    every = {**report.by_label(frames), **({keys["best ensemble"][0]: frames[ensemble]} if ensemble else {})}
    baseline = f"baseline/{BASELINE}"
    found = ch.predictions([baseline]) if baseline in prediction_files(ch.profile, "test", ch.runs_root) else {}
    return Examined(report, roles, test, every, people(ch), found.get(baseline))


def people(ch) -> pd.DataFrame:
    """The test split's people (subgroups.demographics); NIH's own label file gives the fields our rows lack."""
    rows = ch.data.split("test")
    return subgroups.demographics(rows, ch.nih_labels() if subgroups.missing_columns(rows) else None)
