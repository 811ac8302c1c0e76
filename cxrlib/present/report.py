"""The report's published numbers (../shared/seed/report.md), kept apart so the book can set ours beside them.

These are reference values copied from the report's tables, never results of this project.
"""
from __future__ import annotations

import math

import pandas as pd

from cxrlib.core.config import REPORT_COUNTS
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
# Section 7's final table: the ensembled models and the ensembles, and its headline columns in its own order.
FINAL_ROWS = ("ResNet152", "VGG16", "CheXNet1", "CheXNet2", "Fused (ensemble member)",
              "CNN From Scratch (ensemble member)", "Average voting", "Weighted average voting")
FINAL_HEADLINE = ["Accuracy", "ROC AUC", "F1-macro", "FNFR"]
# Parameter counts of the report's model summaries (sections 3 and 6): table -> row -> count.
PARAMETERS = {"fused network": {"total": 9_211_847, "trainable": 9_211_719, "non_trainable": 128},
              "from scratch": {"first model": 4_741_188, "second model": 2_859_588},
              "learnable resizer": {"parameters": 12_163}}
# Section 4's Hyperband search: the best head it found.
TUNED_HEAD = {"layers": 1, "dropout": 0.23847, "units": 2560, "learning_rate": 1e-4}


# Section 4's flows of experiments where the report states numbers (elsewhere it shows only figures): the best
# epoch, training loss and accuracy (%), validation loss and accuracy (%), and the parameters of the head (4.x.1)
# or the trainable parameters of the fine-tuned model (4.x.2-3).
FLOW_COLUMNS = ("best epoch", "training loss", "training accuracy (%)", "validation loss", "validation accuracy (%)",
                "parameters")
_NONE = (math.nan,) * 5
FLOWS = {
    "4.1.1.2": (15, 1.0792, 51.72, 1.1699, 53.25, 6_423_812),
    "4.1.1.3": (16, 0.91, 62.51, 1.0143, 59.25, 132_356),
    "4.3.1.1": (*_NONE, 3_211_588),  # in the text: "3.211.588 from the Dense layer on top"
    "4.3.1.3": (*_NONE, 70_020),  # its three Dense layers in 4.3.2's summaries: 65,600 + 4,160 + 260
    "4.3.2.1": (6, 0.8128, 68.25, 0.8118, 67.12, 238_148),
    "4.3.2.2": (12, 0.8117, 67.86, 0.8114, 66.87, 400_068),
    "4.3.3.2": (28, 0.8196, 68.10, 0.8153, 68.96, 238_148),
    "4.3.3.3": (50, 0.8088, 68.79, 0.8078, 69.97, 5_594_244),
}


def _loss(before: str, after: str) -> str:
    """'validation loss 1.1699 to 1.0143 (4.1.1.2 to 4.1.1.3)', from FLOWS."""
    return f"validation loss {FLOWS[before][3]} to {FLOWS[after][3]} ({before} to {after})"


# Each step of the flows as a question on validation loss: (backbone, head before, head after, question, the
# report's answer in its words). "Lowered" is the loss of the head before minus that of the head after, above 0.
FLOW_QUESTIONS = (
    ("vgg16", "4.1.1.1", "4.1.1.2", "adding dropout lowered validation loss",
     "yes: 'good improvements in the validation loss value'"),
    ("vgg16", "4.1.1.2", "4.1.1.3", "global average pooling lowered validation loss",
     f"yes: {_loss('4.1.1.2', '4.1.1.3')}"),
    ("vgg16", "4.1.1.3", "4.1.1.4", "data augmentation lowered validation loss",
     "no: 'worst results in terms of validation loss and accuracy'"),
    ("resnet152", "4.2.1.1", "4.2.1.2", "a smaller head (Dense 64, Dropout 0.25) lowered validation loss",
     "yes, slightly: 'a slight performance improvement'"),
    ("resnet152", "4.2.1.2", "4.2.1.3", "data augmentation (and Dropout 0.33) lowered validation loss",
     "yes, slightly: 'a slight improvement wrt the previous model'"),
    ("chexnet", "4.3.1.1", "4.3.1.2", "global average pooling lowered validation loss",
     "yes: 'reduce overfitting and improve the performance'"),
    ("chexnet", "4.3.1.2", "4.3.1.3", "a second Dense 64 lowered validation loss",
     "not stated: kept since its validation curves had not reached a plateau"),
)
# Gathering more data (sections 2.4, 4.x.3): what the report found for each backbone it retrained on its larger set.
MORE_DATA = {
    "vgg16": "no at the same depth: 'the performance of the model on the validation didn't get much better' "
             "(4.1.3.2); it let deeper fine tuning help (4.1.3.3)",
    "resnet152": "no: 'we still have the same behaviour' (4.2.3.2)",
    "chexnet": f"mixed: {_loss('4.3.2.1', '4.3.3.2')}, validation accuracy {FLOWS['4.3.2.1'][4]}% to "
               f"{FLOWS['4.3.3.2'][4]}%",
}

# The columns a table of the flows' findings shows: the report's answer beside ours.
ANSWERS = ["report's answer", "our answer"]


def step_answers(findings: pd.DataFrame, step: str) -> pd.DataFrame:
    """The report's and our answers to one step of the findings (those of `step`, e.g. 'head flow')."""
    return findings.loc[findings["step"] == step, ANSWERS]


def head_choice(run, kept) -> str:
    """Which head the report kept (kept) against the one validation chose in our run (run.chosen, chosen by
    science.choice), in one sentence with the validation macro F1 of each (run.scores: section -> score)."""
    chosen = run.heads[run.chosen].head
    rule = (f"validation chooses it too (macro F1 {run.scores[kept.section]:.3f})" if chosen == kept else
            f"validation would choose {head_label(chosen)} instead (macro F1 "
            f"{run.scores[chosen.section]:.3f}, against {run.scores[kept.section]:.3f})")
    return f"**{run.label}.** The report kept {head_label(kept)}, the head fine-tuned here; {rule}."


def log_row(history: pd.DataFrame) -> list:
    """The report's five numbers of a training log: the best epoch (1-based, lowest validation loss, the epoch
    its checkpoints keep) and the training and validation loss and accuracy (%) there."""
    best = history.loc[history["val_loss"].idxmin()]
    return [int(best["epoch"]) + 1, best["loss"], 100 * best["accuracy"], best["val_loss"], 100 * best["val_accuracy"]]


def logs_table(rows: dict, names: list) -> pd.DataFrame:
    """FLOW_COLUMNS for each index tuple of rows: a fit (with .history and .params: our row) or the report's numbers."""
    table = pd.DataFrame.from_dict({key: [*log_row(row.history), row.params] if hasattr(row, "history") else list(row)
                                    for key, row in rows.items()}, orient="index", columns=list(FLOW_COLUMNS))
    table.index = pd.MultiIndex.from_tuples(table.index, names=names)
    return table.astype({"best epoch": "Int64", "parameters": "Int64"})


def head_label(head) -> str:
    """A head of the flows as the report names it: '4.1.1.4 Data Augmentation + GAP + Dense 256 + Dropout 0.5'."""
    parts = ["Data Augmentation"] * head.augment + ["GAP"] * (head.pool == "gap")
    for units, dropout in head.dense:
        parts += [f"Dense {units}"] + [f"Dropout {dropout:g}"] * bool(dropout)
    return f"{head.section} {' + '.join(parts)}"


def flow_table(heads, ours: dict) -> pd.DataFrame:
    """One backbone's heads in the report's order, our row (ours: section -> fit) above the report's."""
    rows = {}
    for head in heads:
        if head.section in ours:
            rows[head_label(head), "ours"] = ours[head.section]
        rows[head_label(head), "report"] = FLOWS.get(head.section, (*_NONE, math.nan))
    return logs_table(rows, ["head", "source"])


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
    a, b = (REPORT[row][(GLOBAL_COLUMNS + F1_COLUMNS).index(metric)] for row in (row_a, row_b))
    return f"{'yes' if a > b else 'no'} ({a:.4f} against {b:.4f}, no interval given)"


def final_table(columns=None) -> pd.DataFrame:
    """Section 7's final table (FINAL_ROWS), all columns or `columns`: one list of rows for every page that shows it."""
    table = report_rows(*FINAL_ROWS)
    return table if columns is None else table[list(columns)]


def parameters_table(name: str, ours: dict) -> pd.DataFrame:
    """The report's counts of one table (PARAMETERS[name]) beside ours, so a page never types the report's numbers."""
    return pd.DataFrame({"report": PARAMETERS[name], **ours})


def tuned_head_table(ours: dict) -> pd.DataFrame:
    """The report's Hyperband head (TUNED_HEAD) above the one our search found, typed alike."""
    return pd.DataFrame([TUNED_HEAD, ours], index=["report", "ours"]).astype(
        {"layers": int, "units": int, "dropout": float, "learning_rate": float})


def error_totals(totals: pd.DataFrame) -> pd.DataFrame:
    """Our images every model gets wrong (or right) beside section 5's counts, on its 1,438 test images."""
    return totals.assign(report=pd.Series({**ERROR_SUMMARY, "images": sum(REPORT_COUNTS["test"].values())}))


def error_only_table(only: pd.DataFrame, labels: dict, predicted: pd.Series) -> pd.DataFrame:
    """Images only one model gets wrong (or right), the report's counts beside ours (ERROR_ONLY renamed by
    labels: report model -> our label), and which classes each model predicts."""
    return only.join(ERROR_ONLY.rename(index=labels).add_prefix("report: ")).join(predicted)


def ga_weights_table() -> pd.DataFrame:
    """The report's final GA weights (section 7.2.2), one column, to set beside the weights fitted here."""
    return pd.Series(GA_WEIGHTS, name="the report's GA weights").to_frame()
