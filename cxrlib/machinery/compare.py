"""`cxr compare`: the metrics of two run folders side by side, and the largest difference between them."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.machinery.runs import metric_files, probabilities, read_metrics
from cxrlib.present.labels import PREDICTED

# columns that measure wall-clock time: they differ between identical runs, so comparisons leave them out
TIMING = re.compile(r"time|seconds|\(s\)", re.I)


def _metric_files(folder: Path) -> dict:
    """(chapter, model) -> metrics CSV, for a profile folder (runs/smoke) or a folder of profiles (runs)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist; give runs/ or runs/<profile>")
    return metric_files(folder)


def _metrics(path: Path):
    """One model's metrics row as a Series, timing columns left out."""
    row = read_metrics(path).iloc[0]  # PREDICTED is words (which classes), not a metric
    return row[[c for c in row.index if not TIMING.search(str(c)) and c != PREDICTED]].astype(float)


def _probability_difference(metrics_path: Path, other_metrics_path: Path) -> float:
    """Largest absolute difference between two runs' test probabilities of one model (NaN without both)."""
    files = [p.parent.parent / "predictions" / f"{p.stem}__test.csv" for p in (metrics_path, other_metrics_path)]
    if not all(f.is_file() for f in files):
        return float("nan")
    a, b = (pd.read_csv(f).set_index("Image Index") for f in files)
    if sorted(a.index) != sorted(b.index):
        return float("inf")
    return float(np.abs(probabilities(a) - probabilities(b.loc[a.index])).max())


def compare_runs(a, b):
    """Per chapter and model: each metric in run folder a and b side by side, and the largest difference.

    Timing columns are left out (they differ between identical runs); 'test probabilities' is the largest
    difference of any test-set probability; a model present in one folder only has NaN for the other.
    """
    files_a, files_b = _metric_files(a), _metric_files(b)
    rows = []
    for key in sorted(set(files_a) | set(files_b)):
        ma = _metrics(files_a[key]) if key in files_a else pd.Series(dtype=float)
        mb = _metrics(files_b[key]) if key in files_b else pd.Series(dtype=float)
        names = list((ma if key in files_a else mb).index)
        row = {"chapter": key[0], "model": key[1]}
        for name in names:
            row[f"{name} (a)"] = ma.get(name, np.nan)
            row[f"{name} (b)"] = mb.get(name, np.nan)
        both = key in files_a and key in files_b
        differences = [_difference(ma[n], mb.get(n, np.nan)) for n in names] if both else []
        probs = _probability_difference(files_a[key], files_b[key]) if both else np.nan
        row["test probabilities"] = probs
        # nanmax: test probabilities saved by only one run do not count
        row["largest difference"] = float(np.nanmax([0.0, *differences, probs])) if both else np.nan
        row["found in"] = "both" if both else ("a only" if key in files_a else "b only")
        rows.append(row)
    columns = ["chapter", "model", "largest difference", "test probabilities", "found in"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise FileNotFoundError(f"no metrics in {a} nor in {b} (looked for */metrics/*.csv)")
    return frame.set_index(["chapter", "model"])[[*columns[2:], *[c for c in frame if c not in columns]]]


def _difference(x: float, y: float) -> float:
    """|x - y|; 0 when both are NaN (a metric undefined in both runs), infinite when only one is."""
    if math.isnan(x) or math.isnan(y):
        return 0.0 if math.isnan(x) and math.isnan(y) else math.inf
    return abs(x - y)


def compare_text(a, b) -> str:
    """What `cxr compare` prints: the table, then the largest difference over everything."""
    frame = compare_runs(a, b)
    overall = frame["largest difference"].max()
    missing = frame[frame["found in"] != "both"]
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_rows", None):
        lines = [f"a: {a}", f"b: {b}", frame.to_string(float_format=lambda v: f"{v:.6g}"), ""]
    lines.append(f"largest difference over every metric and test probability of the models in both: {overall:.6g}")
    if len(missing):
        lines.append(f"{len(missing)} model(s) in one folder only: "
                     + ", ".join(f"{c}/{m} ({w})" for (c, m), w in missing["found in"].items()))
    return "\n".join(lines)
