"""`cxr compare`: the metrics of two run folders side by side, and the largest difference between them."""
from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.machinery.runs import metric_files, probabilities, read_json, read_metrics
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
        ma, mb = (_metrics(files[key]) if key in files else pd.Series(dtype=float) for files in (files_a, files_b))
        names = list((ma if key in files_a else mb).index)
        row = {"chapter": key[0], "model": key[1]}
        for name in names:
            row[f"{name} (a)"] = ma.get(name, np.nan)
            row[f"{name} (b)"] = mb.get(name, np.nan)
        both = key in files_a and key in files_b
        gaps = {n: _difference(ma[n], mb.get(n, np.nan)) for n in names} if both else {}
        row["test probabilities"] = _probability_difference(files_a[key], files_b[key]) if both else np.nan
        if not math.isnan(row["test probabilities"]):  # saved by both runs
            gaps["test probabilities"] = row["test probabilities"]
        row["largest difference"] = max(gaps.values(), default=np.nan)
        row["largest in"] = max(gaps, key=gaps.get) if row["largest difference"] > 0 else ""
        row["found in"] = "both" if both else ("a only" if key in files_a else "b only")
        rows.append(row)
    columns = ["chapter", "model", "largest difference", "largest in", "test probabilities", "found in"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise FileNotFoundError(f"no metrics in {a} nor in {b} (looked for */metrics/*.csv)")
    return frame.set_index(["chapter", "model"])[[*columns[2:], *[c for c in frame if c not in columns]]]


def _difference(x: float, y: float) -> float:
    """|x - y|; 0 when both are NaN (a metric undefined in both runs), infinite when only one is."""
    if math.isnan(x) or math.isnan(y):
        return 0.0 if math.isnan(x) and math.isnan(y) else math.inf
    return abs(x - y)


def parameter_lines(a, b) -> list:
    """Which resolved settings (and data) differ between the chapters both folders hold, from their chapter.json:
    '  learning_rate: 0.001 (a), 0.0001 (b) in scratch, fused'."""
    files_a, files_b = _metric_files(a), _metric_files(b)
    differ = {}
    for key in sorted(set(files_a) & set(files_b)):
        infos = [read_json(files[key].parent.parent / "chapter.json") for files in (files_a, files_b)]
        settings = [{**info.get("settings", {}), "data": info.get("data_identity")} for info in infos]
        for name in sorted(set(settings[0]) | set(settings[1])):
            values = tuple(json.dumps(s.get(name)) for s in settings)
            if values[0] != values[1] and key[0] not in differ.setdefault((name, *values), []):
                differ[(name, *values)].append(key[0])
    if not differ:
        return ["parameters: the same for every chapter in both"]
    return ["parameters that differ:"] + [textwrap.fill(f"{name}: {va} (a), {vb} (b) in {', '.join(chapters)}", 100,
                                                        initial_indent="  ", subsequent_indent="    ")
                                          for (name, va, vb), chapters in differ.items()]


def narrow_table(frame: pd.DataFrame) -> str:
    """One line per model, within 100 columns: its largest difference, in which metric, and which folders hold it."""
    lines = [f"{'model':40}  {'difference':>10}  {'in':6}  largest in"]
    for (chapter, model), row in frame.iterrows():
        where = row["largest in"]
        values = f" ({row[f'{where} (a)']:.4g} vs {row[f'{where} (b)']:.4g})" if f"{where} (a)" in row.index else ""
        lines.append(f"{f'{chapter}/{model}'[:40]:40}  {row['largest difference']:>10.4g}  {row['found in']:6}  "
                     f"{where}{values}"[:100])
    return "\n".join(lines)


def compare_text(a, b, wide: bool = False) -> str:
    """What `cxr compare` prints: the parameters that differ, the table (one line per model within 100 columns, or
    every metric of both folders side by side with wide=True), then the largest difference over everything."""
    frame = compare_runs(a, b)
    overall = frame["largest difference"].max()
    missing = frame[frame["found in"] != "both"]
    lines = [f"a: {a}", f"b: {b}", *parameter_lines(a, b), ""]
    with pd.option_context("display.max_columns", None, "display.width", 400, "display.max_rows", None):
        lines += [frame.to_string(float_format=lambda v: f"{v:.6g}") if wide else narrow_table(frame), ""]
    lines.append(f"largest difference over every metric and test probability of the models in both: {overall:.6g}")
    if len(missing):
        lines.append(textwrap.fill(f"{len(missing)} model(s) in one folder only: "
                                   + ", ".join(f"{c}/{m} ({w})" for (c, m), w in missing["found in"].items()), 100))
    return "\n".join(lines)
