"""Every number cxrlib/present/report.py (and config's section 1.2 counts) quotes from the report, checked against the report's
own tables, parsed from a copy of report.md kept in tests/data; and paired, verdict and _row on examples worked by hand."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from cxrlib.core.config import CLASSES, REPORT_COUNTS, REPORT_FIRST_TRAIN_SIZE
from cxrlib.present import report
from cxrlib.science.metrics import F1_COLUMNS, GLOBAL_COLUMNS

REPORT_MD = Path(__file__).resolve().parent / "data" / "report.md"  # a copy of ../shared/seed/report.md
# the report's column names -> ours
COLUMN = {"Accuracy": "Accuracy", "Loss": "Loss", "Roc Auc Score": "ROC AUC", "ROC AUC": "ROC AUC",
          "F1-macro": "F1-macro", "F1-Macro": "F1-macro", "FNFR": "FNFR", "Inference time": "Inference time (s)",
          "Inference Time": "Inference time (s)", **{c: f"F1-{c}" for c in CLASSES},
          **{f"F1-{c}": f"F1-{c}" for c in CLASSES}}


def cells(line: str) -> list:
    """A tab-separated line of the report, HTML bold and spaces stripped."""
    return [re.sub(r"</?b>", "", cell).strip() for cell in line.split("\t")]


def blocks(text: str) -> list:
    """Runs of consecutive tab-separated lines: the report's tables."""
    found, current = [], []
    for line in text.splitlines():
        if "\t" in line:
            current.append(cells(line))
        elif current:
            found.append(current)
            current = []
    return found + ([current] if current else [])


@pytest.fixture(scope="module")
def tables():
    """Every metrics table of the report: a list of (header, {row name: {our column: value}})."""
    out = []
    for block in blocks(REPORT_MD.read_text()):
        header = block[0]
        if header[0] != "Model" or not set(header[1:]) <= set(COLUMN):
            continue
        out.append((header, {row[0]: {COLUMN[h]: float(v) for h, v in zip(header[1:], row[1:])} for row in block[1:]}))
    return out


def report_md_row(tables, name: str) -> dict:
    """All numbers the report gives for one model, merged over its tables (global and per-class F1).

    A name followed by '.h5' in the report (sections 2-3) is a model file; the ensemble tables (section 7) list
    models without it: report.py tells those apart with ' (ensemble member)'.
    """
    names = {n for _, rows in tables for n in rows}
    if name.endswith(" (ensemble member)"):
        key = name.removesuffix(" (ensemble member)")
    else:
        key = f"{name}.h5" if f"{name}.h5" in names else name
    merged = {}
    for _, rows in tables:
        for column, value in rows.get(key, {}).items():
            assert merged.get(column, value) == value, f"{name}: two values for {column}"
            merged[column] = value
    return merged


def test_the_copy_of_the_report_is_the_report():
    text = REPORT_MD.read_text()
    assert "Chest X-ray" in text and "Weighted average voting" in text and len(text) > 50_000


def test_the_parser_finds_every_metrics_table(tables):
    # 2 preprocessing, 2 resizer, 2 from scratch, 2 tuner, 2 fused, 2 fused trials, then the 3 ensemble tables
    assert len(tables) == 15
    assert sum(len(rows) for _, rows in tables) == 4 + 4 + 4 + 4 + 1 + 1 + 2 + 2 + 2 + 2 + 6 + 6 + 6 + 1 + 1


def test_every_report_row_matches_report_md_number_for_number(tables):
    checked = 0
    for name in report.REPORT:
        ours = report.report_rows(name).iloc[0]
        theirs = report_md_row(tables, name)
        assert theirs, f"{name} is in report.py but in no table of report.md"
        for column in GLOBAL_COLUMNS + F1_COLUMNS:
            if column in theirs:
                assert ours[column] == theirs[column], f"{name} {column}: report.py {ours[column]}, report.md {theirs[column]}"
                checked += 1
            else:  # a number the report does not give is NaN, never a guess
                assert math.isnan(ours[column]), f"{name} {column}: report.py has {ours[column]}, report.md nothing"
    # sections 2-3: 19 rows of 5 global numbers and 4 F1; section 7: 6 members of 10, 2 ensembles of 8
    assert checked == 19 * 9 + 6 * 10 + 2 * 8


def test_every_table_row_of_report_md_is_in_report_py(tables):
    names = {name for _, rows in tables for name in rows}
    ours = set()
    for key in report.REPORT:
        if key.endswith(" (ensemble member)"):
            ours.add(key.removesuffix(" (ensemble member)"))
        else:
            ours.add(f"{key}.h5" if f"{key}.h5" in names else key)
    assert names == ours, f"report.md rows missing from report.py: {sorted(names - ours)}"


def test_the_f1_column_order_is_the_reports_header(tables):
    f1_headers = {tuple(h[1:]) for h, _ in tables if h[1] == "Atelectasis"}
    assert f1_headers == {report._ORDER}
    ensemble_headers = {tuple(c for c in h if c.startswith("F1-") and c not in ("F1-macro", "F1-Macro")) for h, _ in tables
                        if "FNFR" in h}
    assert ensemble_headers == {tuple(f"F1-{c}" for c in report._ORDER)}
    # _row puts the report's first per-class F1 (Atelectasis) under our F1-Atelectasis, and so on
    row = dict(zip(GLOBAL_COLUMNS + F1_COLUMNS, report._row(0.1, 0.2, 0.3, 0.4, 5.0, (1, 2, 3, 4), 0.6)))
    assert row == {"Accuracy": 0.1, "Loss": 0.2, "ROC AUC": 0.3, "F1-macro": 0.4, "FNFR": 0.6,
                   "Inference time (s)": 5.0, "F1-No Finding": 3, "F1-Effusion": 4, "F1-Infiltration": 2,
                   "F1-Atelectasis": 1}


def test_error_analysis_and_ga_numbers_match_report_md():
    found = blocks(REPORT_MD.read_text())
    summary = next(b for b in found if b[0][0].startswith("#Images misclassified"))
    assert {k.removeprefix("#Images ").lower(): int(v) for k, v in summary} == {
        k.lower(): v for k, v in report.ERROR_SUMMARY.items()}
    only = next(b for b in found if b[0][:1] == ["Model"] and "#Misclassified images" in b[0])
    theirs = {r[0].lower(): [int(r[1]), int(r[2])] for r in only[1:]}
    ours = {name.lower(): row.tolist() for name, row in report.ERROR_ONLY.iterrows()}
    assert ours == theirs
    text = REPORT_MD.read_text()
    weights = text[text.index("The final weights are the following:"):]
    parsed = {r[0]: float(r[1]) for r in next(b for b in blocks(weights))}
    assert parsed == report.GA_WEIGHTS


def test_the_best_numbers_are_the_weighted_ensembles(tables):
    weighted = report_md_row(tables, "Weighted average voting")
    assert report.BEST == {k: weighted[k] for k in ("Accuracy", "F1-macro", "ROC AUC")}
    best_of_all = max(row["Accuracy"] for _, rows in tables for row in rows.values() if "Accuracy" in row)
    assert report.BEST["Accuracy"] == best_of_all


def test_config_set_sizes_are_section_1_2s():
    text = REPORT_MD.read_text()
    section = text[text.index("## 1.2 Dataset"):text.index("### 1.3")]
    parts = dict(zip(("train", "val", "test"), re.split(r"Validation Set:|Test Set:", section)))
    for split, part in parts.items():
        counts = {name: int(n) for name, n in re.findall(r"Number of ([A-Za-z ]+?): (\d+)", part)}
        assert counts == REPORT_COUNTS[split], split
    assert sum(REPORT_COUNTS["train"].values()) == 11_143
    assert "training dataset containing 7.996 images" in text and REPORT_FIRST_TRAIN_SIZE == 7996


# --- the report's rows, pairings and answers, by hand ---

def test_report_rows_follow_tables_10_and_11():
    fused = report.report_rows("Fused").iloc[0]
    assert fused[["Accuracy", "Loss", "ROC AUC", "F1-macro", "Inference time (s)"]].tolist() == [
        0.617647, 0.971038, 0.836229, 0.605598, 7.426303]
    assert fused[["F1-Atelectasis", "F1-Infiltration", "F1-No Finding", "F1-Effusion"]].tolist() == [
        0.472727, 0.593625, 0.647815, 0.708223]
    assert math.isnan(fused["FNFR"])  # the report gives no FNFR before section 7
    with pytest.raises(KeyError, match="no report row named Nope"):
        report.report_rows("Nope")


def test_counterparts_pair_our_models_as_each_chapter_shows_them():
    from cxrlib.core.manifest import QUESTIONS, counterpart

    assert counterpart("hyperband", "scratch/second_cnn") == "Pre_tuner"
    assert counterpart("preprocessing", "scratch/second_cnn") == "No_prep_scratch"
    assert counterpart("pretrained", "vgg16_finetune_block5_conv1") == "VGG16"
    assert counterpart("pretrained", "vgg16_features") is None
    every = [q for questions in QUESTIONS.values() for q in questions]
    assert all(row in report.REPORT for *_, a, b in every for row in (a, b) if row)


def test_the_reports_answer_is_its_published_numbers():
    assert report.report_answer("Fused", "Base") == "yes (0.6056 against 0.5669, no interval given)"
    assert report.report_answer("Prep_scratch", "No_prep_scratch").startswith("no (0.5627 against 0.5644")
    assert report.report_answer("CNN_from_scratch", None) == "not compared in the report"

