"""Whom the models miss (beyond the report): the false No Finding rate and per-class recall by sex, age group
and view position, with patient-clustered bootstrap intervals (science.stats) and the gap between groups; and the
shortcut check, whether a model's answers follow the label file's fields beyond what the true classes explain.

Seyyed-Kalantari et al. (Nature Medicine 27, 2176-2182, 2021) found such "underdiagnosis" on NIH ChestX-ray14
itself. A rate rests on the images it counts (diseased images for the FNFR, images of the class for a recall) and
on their patients: a patient's images are not independent, and one patient with many images weighs like few
patients. So a rate is read only where it rests on at least MIN_IMAGES images and MIN_PATIENTS effective patients
(Kish's effective sample size of the clusters, (sum of images)^2 / sum of images^2 per patient: the patient count
when each has one image, fewer when one patient supplies many). Every other rate is shown, marked too few to
read, and kept out of the gaps, so no gap rests on it. The tables, words and figures are cxrlib.present.subgroups'.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, NO_FINDING
from cxrlib.science.stats import patient_resamples, percentile_interval, ratio

MIN_IMAGES = 20
MIN_PATIENTS = 10  # effective patients (Kish)
OLDEST = 120  # NIH's label file holds a few impossible ages (up to 414): read as unknown
AGE_EDGES = (0, 20, 40, 60, 80)
AGE_GROUPS = ("0–20", "20–40", "40–60", "60–80", "80+")
SEXES = {"F": "female", "M": "male"}
VIEWS = ("PA", "AP")
# attribute -> (the label file's column, its groups in display order, the group every gap is measured from;
# where too few, the readable group resting on the most images)
ATTRIBUTES = {
    "sex": ("Patient Gender", tuple(SEXES.values()), "male"),
    "age group": ("Patient Age", AGE_GROUPS, "40–60"),
    "view position": ("View Position", VIEWS, "PA"),
}
FNFR = "FNFR"
METRICS = (FNFR, *(f"recall: {c}" for c in CLASSES))
# the shortcut check's rates: each disease's images called No Finding (its FNFR within the class)
MISSED = tuple(f"{c} called No Finding" for k, c in enumerate(CLASSES) if k != NO_FINDING)


# ---------------------------------------------------------------- who is in the test set

def known_ages(ages) -> pd.Series:
    """Ages as numbers, NaN where unknown or impossible (below 0, above OLDEST): NIH's file has some up to 414."""
    ages = pd.to_numeric(pd.Series(ages), errors="coerce")
    return ages.where((ages >= 0) & (ages <= OLDEST))


def age_group(ages) -> pd.Series:
    """Each age's group (0–20, 20–40, 40–60, 60–80, 80+; lower edge included); NaN when unknown or absurd."""
    groups = pd.cut(known_ages(ages), bins=[*AGE_EDGES, np.inf], right=False, labels=list(AGE_GROUPS))
    return groups.astype(object).where(groups.notna(), np.nan)


def missing_columns(rows: pd.DataFrame) -> list:
    """The label file's columns the groups are read from (ATTRIBUTES) that rows lack."""
    return [column for column, _, _ in ATTRIBUTES.values() if column not in rows.columns]


def demographics(rows: pd.DataFrame, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """Image id, label, patient and the three groups of each row; columns rows lack are taken from metadata
    (NIH's label file) by image id."""
    rows = rows.reset_index(drop=True)
    missing = missing_columns(rows)
    if missing and metadata is not None and set(missing) <= set(metadata.columns):
        rows = rows.join(metadata.set_index("Image Index")[missing], on="Image Index")
    if missing_columns(rows):
        raise ValueError(f"the test rows lack the column(s) {', '.join(missing_columns(rows))}; NIH's label file "
                         f"(Data_Entry_2017.csv) has them: give it as the data's label file")
    return pd.DataFrame({"Image Index": rows["Image Index"].astype(str), "label": rows["label"].astype(int),
                         "Patient ID": rows["Patient ID"],
                         "sex": rows["Patient Gender"].astype(str).str.strip().str.upper().map(SEXES),
                         "age group": age_group(rows["Patient Age"]).to_numpy(),
                         "view position": rows["View Position"].astype(str).str.strip().str.upper().where(
                             lambda v: v.isin(VIEWS))})


def with_predictions(people: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """people with each image's predicted class, joined by image id (every image must have one)."""
    pred = predictions.set_index(predictions["Image Index"].astype(str))["pred"]
    missing = sorted(set(people["Image Index"]) - set(pred.index))
    if missing:
        raise ValueError(f"no prediction for {len(missing)} test image(s), e.g. {', '.join(missing[:3])}")
    return people.assign(pred=pred.loc[people["Image Index"]].astype(int).to_numpy())


def group_counts(people: pd.DataFrame) -> pd.DataFrame:
    """Test images, diseased test images and patients per group of every attribute."""
    rows = []
    for attribute, (_, groups, _) in ATTRIBUTES.items():
        rows += [count_row(people[people[attribute] == group], attribute, group) for group in groups]
        unknown = people[people[attribute].isna()]
        rows += [count_row(unknown, attribute, "unknown")] if len(unknown) else []
    return pd.DataFrame(rows).set_index(["attribute", "group"])


def count_row(mine: pd.DataFrame, attribute: str, group: str) -> dict:
    """One group's images and patients, and the diseased images, their patients and effective patients."""
    diseased = mine.loc[mine["label"] != NO_FINDING, "Patient ID"]
    return {"attribute": attribute, "group": group, "images": len(mine), "patients": mine["Patient ID"].nunique(),
            "diseased images": len(diseased), "their patients": diseased.nunique(),
            "effective patients": round(effective_patients(diseased), 1)}


# ---------------------------------------------------------------- rates and the bootstrap

def metric_masks(labels, preds) -> dict:
    """metric -> (images counted as hits, images the rate rests on): FNFR, each class's recall, and each
    disease's images called No Finding."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    diseased = labels != NO_FINDING
    masks = {FNFR: (diseased & (preds == NO_FINDING), diseased)}
    for k, name in enumerate(CLASSES):
        masks[f"recall: {name}"] = ((labels == k) & (preds == k), labels == k)
        if k != NO_FINDING:
            masks[f"{name} called No Finding"] = ((labels == k) & (preds == NO_FINDING), labels == k)
    return masks


def effective_patients(patients) -> float:
    """Kish's effective number of patients of some images: (sum of images)^2 / sum of images^2 per patient."""
    sizes = pd.Series(np.asarray(patients)).value_counts().to_numpy(float)
    return float(sizes.sum() ** 2 / (sizes ** 2).sum()) if len(sizes) else 0.0


def group_rate(hits, bases, patients, weights) -> tuple:
    """(one group's row: images, patients, effective patients, the rate with its interval, the resamples in which
    the group was drawn empty, whether it can be read; its resampled rates)."""
    samples = ratio(weights @ hits, weights @ bases)
    found = percentile_interval(ratio(hits.sum(), bases.sum()), samples)
    mine = patients[bases]
    images, effective = int(bases.sum()), effective_patients(mine)
    return ({"images": images, "patients": len(set(mine)), "effective patients": round(effective, 1),
             **found._asdict(), "readable": bool(images >= MIN_IMAGES and effective >= MIN_PATIENTS)}, samples)


def reference_group(attribute: str, readable: dict) -> str | None:
    """The group gaps are measured from: the attribute's own where readable, else the readable group resting on
    the most images (readable: group -> images)."""
    preferred = ATTRIBUTES[attribute][2]
    if preferred in readable:
        return preferred
    return max(readable, key=readable.get) if readable else None


def attribute_tables(people: pd.DataFrame, attribute: str, weights: np.ndarray, metrics=METRICS) -> tuple:
    """(rates, gaps) of one attribute: each group's rate with its interval, and each readable group's gap from
    the reference group on the same resamples (the gap's empty count: resamples in which either group was)."""
    masks, patients = metric_masks(people["label"], people["pred"]), people["Patient ID"].to_numpy()
    rates, gaps = [], []
    for metric in metrics:
        hit, base = masks[metric]
        found = {group: group_rate(hit & inside, base & inside, patients, weights) for group in
                 ATTRIBUTES[attribute][1] for inside in [(people[attribute] == group).to_numpy()]}
        rates += [{"attribute": attribute, "metric": metric, "group": group, **row}
                  for group, (row, _) in found.items()]
        readable = {group: row["images"] for group, (row, _) in found.items() if row["readable"]}
        reference = reference_group(attribute, readable)
        for group in [g for g in readable if g != reference]:
            (mine, a), (theirs, b) = found[group], found[reference]
            gap = percentile_interval(mine["estimate"] - theirs["estimate"], a - b)
            gaps.append({"attribute": attribute, "metric": metric, "gap": f"{group} − {reference}",
                         **gap._asdict(), "excludes 0": gap.sign != 0})
    return pd.DataFrame(rates), pd.DataFrame(gaps, columns=["attribute", "metric", "gap", "estimate", "low",
                                                            "high", "empty", "excludes 0"])


def subgroup_tables(people: pd.DataFrame, n: int = 1000, seed: int = 0, attributes=tuple(ATTRIBUTES),
                    metrics=METRICS) -> tuple:
    """(rates, gaps) for the attributes, from one set of n patient resamples (people: demographics with pred)."""
    weights = patient_resamples(people["Patient ID"], n, seed)
    tables = [attribute_tables(people, attribute, weights, metrics) for attribute in attributes]
    return (pd.concat([rates for rates, _ in tables], ignore_index=True),
            pd.concat([gaps for _, gaps in tables], ignore_index=True))


def model_tables(people: pd.DataFrame, predictions: dict, n: int = 1000, seed: int = 0, attributes=tuple(ATTRIBUTES),
                 metrics=METRICS) -> tuple:
    """(rates, gaps) of every model (name -> its test predictions), with a 'model' column first."""
    tables = {name: subgroup_tables(with_predictions(people, frame), n, seed, attributes, metrics)
              for name, frame in predictions.items()}
    return tuple(pd.concat({name: found[part] for name, found in tables.items()}, names=["model"])
                 .reset_index(level="model").reset_index(drop=True) for part in (0, 1))


# ---------------------------------------------------------------- the shortcut check

def agreement(labels, model, base, weights) -> tuple:
    """(observed, expected) share of images on which two classifiers name the same class, under each row of
    weights; expected is what their answers would share if each depended on the image's true class alone
    (sum over classes c and answers k of n_c * P(model k | c) * P(base k | c), over all images)."""
    k = len(CLASSES)
    truth, said_a, said_b = (np.eye(k)[np.asarray(v, int)] for v in (labels, model, base))
    observed = ratio(weights @ (said_a * said_b).sum(axis=1), weights.sum(axis=1))
    per_class = weights @ truth
    a = (weights @ (truth[:, :, None] * said_a[:, None, :]).reshape(len(truth), -1)).reshape(-1, k, k)
    b = (weights @ (truth[:, :, None] * said_b[:, None, :]).reshape(len(truth), -1)).reshape(-1, k, k)
    expected = ratio(np.nansum(ratio((a * b).sum(axis=2), per_class), axis=1), weights.sum(axis=1))
    return observed, expected


def agreement_table(people: pd.DataFrame, predictions: dict, base: pd.DataFrame | None, n: int = 1000,
                    seed: int = 0) -> pd.DataFrame | None:
    """Per model: how often it names the labels-only baseline's class, how often it would if both followed the
    true class alone, and the excess with its interval from the same patient resamples (a paired difference).
    None without the baseline's predictions."""
    if base is None:
        return None
    weights, theirs = patient_resamples(people["Patient ID"], n, seed), with_predictions(people, base)["pred"]
    rows = {}
    for name, frame in predictions.items():
        mine = with_predictions(people, frame)["pred"]
        (observed,), (expected,) = agreement(people["label"], mine, theirs, np.ones((1, len(people))))
        resampled, chance = agreement(people["label"], mine, theirs, weights)
        rows[name] = {"agrees": observed, "expected from the classes": expected,
                      "excess": percentile_interval(observed - expected, resampled - chance)}
    return pd.DataFrame(rows).T.rename_axis("model")
