"""The labels-only chapter's page: its features, its rows, its scores with intervals, the fields that carry the
signal, and the summary in words that only the intervals decide."""
from __future__ import annotations

import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.present.claims import CHANCE_AUC, chance_reading, difference_word, interval_text, units
from cxrlib.science import baseline
from cxrlib.science.subgroups import OLDEST

SHOWN = ("Accuracy", "F1-macro", "ROC AUC", "FNFR")
PARTS = {"train": "fit", "val": "validation", "test": "held out"}  # the baseline's own split, as its page names it
MODEL, MAJORITY = "labels only", baseline.TRIVIAL[0]


FIELDS = {  # what each of science.baseline.FEATURES is, in words
    "age": f"the patient's age in years (Patient Age; above {OLDEST} read as unknown)",
    "sex": "the patient's sex (Patient Gender; 1 for male)",
    "AP view": "the view position (View Position; 1 for AP, the bedside film, 0 for PA)",
    "follow-up number": "how many earlier visits of the patient NIH's file records (Follow-up #)",
    "width": "the original image's width in pixels (OriginalImage[Width,Height])",
    "height": "the original image's height in pixels",
    "pixel spacing x": "the scanner's pixel spacing across, in mm (OriginalImagePixelSpacing[x,y])",
    "pixel spacing y": "the scanner's pixel spacing down, in mm",
    "patient's images": "how many images of the patient NIH's file holds, of any finding",
}


def features_table() -> pd.DataFrame:
    """The fields the baseline reads, and what each is."""
    return pd.DataFrame({"what it is": [FIELDS[name] for name in baseline.FEATURES]},
                        index=pd.Index(baseline.FEATURES, name="field"))


def parts_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Images per class and patients in each part of the baseline's own split of NIH's rows, by PARTS' names."""
    table = pd.crosstab(rows["split"], rows["label"]).reindex(index=list(PARTS), columns=range(len(CLASSES)),
                                                              fill_value=0)
    table.columns = list(CLASSES)
    table["images"] = table.sum(axis=1)
    table["patients"] = rows.groupby("split")["Patient ID"].nunique().reindex(list(PARTS))
    return table.rename(index=PARTS).rename_axis("part")


def class_profile(found) -> pd.DataFrame:
    """Each field's mean per class on the fit rows: what the model can see (the AP share, the ages, the visits)."""
    fit = found.rows[found.rows["split"] == "train"]
    means = found.features.loc[fit["Image Index"].astype(str)].groupby(fit["label"].to_numpy()).mean()
    return means.set_axis([CLASSES[k] for k in means.index]).T.rename_axis("mean on the fit rows")


def grid_table(found) -> pd.DataFrame:
    """Every setting's validation macro F1 and the one chosen (science.choice: the highest, first of equals)."""
    return pd.DataFrame({found.grid.name: found.grid,
                         "chosen": ["chosen" if key == found.chosen else "" for key in found.grid.index]})


def scores_table(scored) -> pd.DataFrame:
    """One test set: each model's metrics with their 95% patient-bootstrap intervals, and where its ROC AUC
    cannot be told from chance (or lies below it: a guess that was unlucky on these images)."""
    rows = {}
    for model, probs in scored.probs.items():
        found = scored.boot.intervals(probs, SHOWN)
        rows[model] = {**{metric: interval_text(found[metric]) for metric in SHOWN},
                       "reading": chance_reading(found["ROC AUC"]) or ("below chance" if found["ROC AUC"].high <
                                                                          CHANCE_AUC else "")}
    return pd.DataFrame(rows).T.rename_axis("model")


def title(scored) -> str:
    """A test set's heading: what it is and what its intervals rest on."""
    return f"**{scored.name[0].upper()}{scored.name[1:]}** ({where(scored)})"


def where(scored) -> str:
    """'82 test images from 62 patients' for one test set."""
    split = "test" if scored.name.startswith("our") else "held-out"
    return units(scored.boot.images, scored.boot.patient_count, split)


def score_sentence(scored) -> str:
    """The baseline's macro F1 and ROC AUC on one test set, against chance and always answering No Finding."""
    boot, probs, at = scored.boot, scored.probs[MODEL], where(scored)
    f1, auc = boot.interval(probs, "F1-macro"), boot.interval(probs, "ROC AUC")
    chance = difference_word(boot.against(probs, "ROC AUC", CHANCE_AUC), at, "above chance", "below chance")
    gap = boot.difference(probs, scored.probs[MAJORITY], "F1-macro")
    return (f"On {scored.name} ({at}): macro F1 {interval_text(f1)}, ROC AUC {interval_text(auc)} ({chance}); "
            f"macro F1 against always answering No Finding: {difference_word(gap, at)} (difference "
            f"{interval_text(gap, signed=True)}).")


def summary_text(found) -> str:
    """The chapter's findings in words, from its tables and intervals."""
    lines = [f"- {score_sentence(scored)}" for scored in found.tests]
    if found.ours_missing:
        lines.insert(0, f"- Not scored on our test split: NIH's label file does not list {found.ours_missing} of our "
                        f"validation and test images (synthetic images have no fields).")
    lines.append(f"- Without the patient's history ({' and '.join(baseline.HISTORY)}): "
                 f"{score_sentence(found.without_history).split(': ', 1)[1]}")
    top = found.importance[found.importance["drop in macro F1"] > 0].index[:3]
    if len(top):
        lines.append(f"- The fields that carry most of the signal (macro F1 lost when each is shuffled): "
                     f"{', '.join(top)}.")
    return "\n".join(lines)


def plot_importance(importance: pd.DataFrame):
    """Each field's drop in macro F1 when shuffled, with its spread over repeats: which fields carry the signal."""
    import matplotlib.pyplot as plt

    shown = importance.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.4))
    ax.barh(shown.index, shown["drop in macro F1"], xerr=shown["spread (sd)"], color="#4c72b0", capsize=3)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(title="Which fields carry the signal (class-balanced held-out NIH patients)",
           xlabel="drop in macro F1 when the field is shuffled")
    fig.tight_layout()
    return fig


def plot_scores(tests: list):
    """Macro F1 with its 95% interval on every test set: the labels-only model beside the two rows without one."""
    from cxrlib.present.figures import plot_forest

    found = {f"{scored.name}: {name}": scored.boot.interval(probs, "F1-macro")
             for scored in tests for name, probs in scored.probs.items()}
    return plot_forest(found, "The labels-only baseline, macro F1 with 95% patient intervals",
                       xlabel="macro F1")
