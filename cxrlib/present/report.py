"""The report's published numbers (../shared/seed/report.md), kept apart so the book can set ours beside them.

These are reference values copied from the report's tables, never results of this project.
"""
from __future__ import annotations

import math

import pandas as pd

from cxrlib.science.metrics import F1_COLUMNS, GLOBAL_COLUMNS

_ORDER = ("Atelectasis", "Infiltration", "No Finding", "Effusion")  # the report's F1 column order


def _row(acc, loss, auc, f1, seconds, f1_by_class, fnfr=math.nan):
    """A report row in our column layout (the report lists F1 per class in its own order)."""
    per_class = dict(zip(_ORDER, f1_by_class))
    return [acc, loss, auc, f1, fnfr, seconds] + [per_class[c.removeprefix("F1-")] for c in F1_COLUMNS]


REPORT = {
    # Tables 1-2 (preprocessing), 3-4 (resizer), 5-6 (from scratch), 8-9 (tuner), 10-13 (fused)
    "Prep_scratch": _row(0.578173, 1.015191, 0.813689, 0.562666, 7.863272, (0.400802, 0.584392, 0.592000, 0.673469)),
    "Prep_fused": _row(0.517802, 1.148516, 0.755353, 0.505125, 2.009151, (0.413428, 0.456693, 0.524272, 0.626109)),
    "No_prep_fused": _row(0.526316, 1.146247, 0.765587, 0.485992, 2.026920, (0.273839, 0.454902, 0.579365, 0.635864)),
    "No_prep_scratch": _row(0.581269, 0.997064, 0.822521, 0.564399, 7.856832, (0.398357, 0.584440, 0.592686, 0.682111)),
    "Resizer_2": _row(0.594427, 0.996613, 0.832783, 0.557707, 6.925866, (0.307305, 0.574956, 0.642369, 0.706199)),
    "No_resizer_2": _row(0.526316, 1.146247, 0.765587, 0.485992, 2.010015, (0.273839, 0.454902, 0.579365, 0.635864)),
    "Resizer_1": _row(0.565015, 1.033257, 0.810733, 0.551248, 6.784299, (0.412639, 0.542694, 0.580468, 0.669192)),
    "No_resizer_1": _row(0.531734, 1.111113, 0.773273, 0.508024, 1.796607, (0.354212, 0.463602, 0.576832, 0.637450)),
    "CNN_from_scratch": _row(0.581269, 0.997064, 0.822521, 0.564399, 7.856832, (0.398357, 0.58444, 0.592686, 0.682111)),
    "Pre_tuner": _row(0.581269, 1.043573, 0.804218, 0.567482, 8.279156, (0.453686, 0.541935, 0.601432, 0.672872)),
    "Tuner": _row(0.597523, 0.996669, 0.823669, 0.579081, 8.297672, (0.401786, 0.624390, 0.610039, 0.680108)),
    "Fused": _row(0.617647, 0.971038, 0.836229, 0.605598, 7.426303, (0.472727, 0.593625, 0.647815, 0.708223)),
    "Base": _row(0.574303, 1.032782, 0.828950, 0.566883, 10.767316, (0.477745, 0.545833, 0.569106, 0.674847)),
    "no_da_no_rs_prep": _row(0.517802, 1.148516, 0.755353, 0.505125, 1.038314, (0.413428, 0.456693, 0.524272, 0.626109)),
    "no_da_yes_rs_2048": _row(0.617647, 0.971031, 0.836235, 0.605598, 3.091209, (0.472727, 0.593626, 0.647815, 0.708223)),
    "yes_da_yes_rs_4096": _row(0.565015, 1.033255, 0.810735, 0.551248, 3.047725, (0.412639, 0.542694, 0.580468, 0.669192)),
    "no_da_yes_rs_4096": _row(0.594427, 0.996613, 0.832780, 0.557707, 3.084051, (0.307305, 0.574956, 0.642369, 0.706199)),
    "yes_da_no_rs_4096": _row(0.531734, 1.111113, 0.773273, 0.508024, 0.952579, (0.354212, 0.463602, 0.576832, 0.637450)),
    "no_da_no_rs_4096": _row(0.526316, 1.146247, 0.765587, 0.485992, 1.147568, (0.273839, 0.454902, 0.579365, 0.635864)),
    # Section 7: the models that were ensembled, and the ensembles
    "ResNet152": _row(0.5987, 0.9818, 0.8317, 0.5906, 31.027, (0.4949, 0.5773, 0.6045, 0.6847), 0.1416),
    "VGG16": _row(0.6405, 0.9369, 0.8606, 0.6334, 21.046, (0.5237, 0.6771, 0.6559, 0.6793), 0.0925),
    "CheXNet1": _row(0.7197, 0.7568, 0.9072, 0.7179, 21.046, (0.6656, 0.7464, 0.7344, 0.7254), 0.0857),
    "CheXNet2": _row(0.7197, 0.7567, 0.9072, 0.7181, 21.356, (0.6667, 0.75, 0.7316, 0.7243), 0.0886),
    "Fused (ensemble member)": _row(0.6363, 0.9456, 0.8447, 0.6296, 7.864, (0.5417, 0.6302, 0.6473, 0.6992), 0.1166),
    "CNN From Scratch (ensemble member)": _row(0.5987, 0.9494, 0.8394, 0.5855, 9.404, (0.4237, 0.6534, 0.6048, 0.6602), 0.1310),
    "Average voting": _row(0.7003, math.nan, 0.8945, 0.6959, math.nan, (0.6055, 0.7422, 0.7101, 0.7259), 0.0809),
    "Weighted average voting": _row(0.7302, math.nan, 0.9073, 0.7275, math.nan, (0.67, 0.75, 0.739, 0.751), 0.0771),
}


# Section 5: error analysis over the five best models, and section 7.2.2: the GA's final weights.
ERROR_SUMMARY = {"misclassified by all the models": 176, "correctly classified by all the models": 501}
ERROR_ONLY = pd.DataFrame({"misclassified only by this model": [43, 88, 40, 49, 53],
                           "correctly classified only by this model": [60, 48, 84, 53, 27]},
                          index=["VGG16", "ResNet152", "CheXNet", "Fused", "CNN from scratch"])
GA_WEIGHTS = {"ResNet152": 0.13074769, "VGG16": 0.13225159, "CheXNet1": 0.27880784, "CheXNet2": 0.25517746,
              "Fused": 0.16125192, "CNN From Scratch": 0.0417635}
BEST = {"Accuracy": 0.7302, "F1-macro": 0.7275, "ROC AUC": 0.9073}


def report_rows(*names: str) -> pd.DataFrame:
    """The report's rows by name, in our metrics-table layout."""
    unknown = [n for n in names if n not in REPORT]
    if unknown:
        raise KeyError(f"no report row named {', '.join(unknown)}; known: {', '.join(REPORT)}")
    return pd.DataFrame([REPORT[n] for n in names], index=pd.Index(names, name="Model"),
                        columns=GLOBAL_COLUMNS + F1_COLUMNS)


def report_answer(row_a, row_b, metric: str = "F1-macro") -> str:
    """What the report's published numbers say of a question (a point comparison: the report gave no interval)."""
    if row_a is None or row_b is None:
        return "not compared in the report"
    a, b = REPORT[row_a][(GLOBAL_COLUMNS + F1_COLUMNS).index(metric)], REPORT[row_b][
        (GLOBAL_COLUMNS + F1_COLUMNS).index(metric)]
    return f"{'yes' if a > b else 'no'} ({a:.4f} against {b:.4f}, no interval given)"
