"""Whom the models miss (beyond the report): the false No Finding rate and per-class recall by sex, age group
and view position, with patient-clustered bootstrap intervals and the gap between groups.

Seyyed-Kalantari et al. (Nature Medicine 27, 2176-2182, 2021) found such "underdiagnosis" on NIH ChestX-ray14
itself. Every rate here rests on a count of images (diseased images for the FNFR, images of the class for a
recall); a rate resting on fewer than MIN_IMAGES is shown, marked too few to read, and kept out of the gaps.
The science is pure (tables in, tables out); its tables, words and figures are cxrlib.present.subgroups'.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, NO_FINDING

MIN_IMAGES = 20
TOO_FEW = "too few to read"
AGE_EDGES = (0, 20, 40, 60, 80)
AGE_GROUPS = ("0–20", "20–40", "40–60", "60–80", "80+")
OLDEST = 120  # NIH's label file holds a few impossible ages (up to 414): read as unknown
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
BASES = ("images of the class", "diseased images")  # what a recall's and the FNFR's n count
METRICS = (FNFR, *(f"recall: {c}" for c in CLASSES))
CITATION = ("Seyyed-Kalantari L, Zhang H, McDermott MBA, Chen IY, Ghassemi M. Underdiagnosis bias of artificial "
            "intelligence algorithms applied to chest radiographs in under-served patient populations. "
            "*Nature Medicine* 27, 2176–2182 (2021). https://doi.org/10.1038/s41591-021-01595-0")


# ---------------------------------------------------------------- which models

def best_model(choice: pd.DataFrame) -> tuple:
    """(label, 'chapter/model') of the report model with the best validation macro F1 (ties: the first row)."""
    if choice.empty:
        raise ValueError("no model has validation predictions; run the model chapters first (cxr run scratch fused "
                         "pretrained)")
    scores = pd.to_numeric(choice["validation macro F1"])
    label = scores.idxmax()
    return label, choice.loc[label, "chosen"]


def best_ensemble(val_scores: pd.Series, tested) -> str | None:
    """'ensemble/<name>' of the ensemble with the best validation macro F1 among those that saved validation
    predictions; without any, the report's best (GA weights) if it saved test predictions; else None."""
    scores = val_scores[[key for key in val_scores.index if key.startswith("ensemble/")]].dropna()
    if not scores.empty:
        return scores.sort_index().idxmax()
    return "ensemble/ga" if "ensemble/ga" in set(tested) else None


# ---------------------------------------------------------------- who is in the test set

def age_group(ages) -> pd.Series:
    """Each age's group (0–20, 20–40, 40–60, 60–80, 80+; lower edge included); NaN when unknown or absurd."""
    ages = pd.to_numeric(pd.Series(ages), errors="coerce")
    ages = ages.where((ages >= 0) & (ages <= OLDEST))
    groups = pd.cut(ages, bins=[*AGE_EDGES, np.inf], right=False, labels=list(AGE_GROUPS))
    return groups.astype(object).where(groups.notna(), np.nan)


def missing_columns(rows: pd.DataFrame) -> list:
    """The label file's columns this chapter needs that rows lack."""
    return [column for column, _, _ in ATTRIBUTES.values() if column not in rows.columns]


def demographics(rows: pd.DataFrame, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """Image id, label, patient and the three groups of each row; columns rows lack are taken from metadata
    (NIH's label file) by image id."""
    rows = rows.reset_index(drop=True)
    missing = missing_columns(rows)
    if missing and metadata is not None and set(missing) <= set(metadata.columns):
        extra = metadata.set_index("Image Index")[missing]
        rows = rows.join(extra, on="Image Index")
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
    """One group's images, diseased images and patients."""
    return {"attribute": attribute, "group": group, "images": len(mine),
            "diseased images": int((mine["label"] != NO_FINDING).sum()), "patients": mine["Patient ID"].nunique()}


# ---------------------------------------------------------------- rates and the bootstrap

def metric_masks(labels, preds) -> dict:
    """metric -> (images counted as hits, images the rate rests on): FNFR, then each class's recall."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    diseased = labels != NO_FINDING
    masks = {FNFR: (diseased & (preds == NO_FINDING), diseased)}
    for k, name in enumerate(CLASSES):
        masks[f"recall: {name}"] = ((labels == k) & (preds == k), labels == k)
    return masks


def patient_weights(patients, n: int, seed: int = 0) -> np.ndarray:
    """(n, images): how often each image's patient was drawn in each of n resamples of the patients."""
    codes, index = np.unique(np.asarray(patients), return_inverse=True)
    draws = np.random.default_rng(seed).integers(len(codes), size=(n, len(codes)))
    counts = np.zeros((n, len(codes)))
    np.add.at(counts, (np.arange(n)[:, None], draws), 1)
    return counts[:, index]


def ratio(hits: np.ndarray, base: np.ndarray) -> np.ndarray:
    """hits / base, NaN where base is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base > 0, hits / np.where(base > 0, base, 1), np.nan)


def interval(samples: np.ndarray, level: float = 0.95) -> tuple:
    """Percentile interval of the resamples that had images to rate (NaN, NaN when none had)."""
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def rate_samples(people: pd.DataFrame, attribute: str, weights: np.ndarray) -> dict:
    """(metric, group) -> (estimate, images it rests on, resampled values) for every group of the attribute."""
    groups = ATTRIBUTES[attribute][1]
    found = {}
    for metric, (hit, base) in metric_masks(people["label"], people["pred"]).items():
        for group in groups:
            inside = (people[attribute] == group).to_numpy()
            hits, bases = hit & inside, base & inside
            estimate = ratio(np.array(hits.sum(), float), np.array(bases.sum(), float))
            found[metric, group] = (float(estimate), int(bases.sum()), ratio(weights @ hits, weights @ bases))
    return found


def reference_group(attribute: str, readable: dict) -> str | None:
    """The group gaps are measured from: the attribute's own where readable, else the readable group resting on
    the most images (readable: group -> images)."""
    preferred = ATTRIBUTES[attribute][2]
    if preferred in readable:
        return preferred
    return max(readable, key=readable.get) if readable else None


def attribute_tables(people: pd.DataFrame, attribute: str, weights: np.ndarray, level: float = 0.95,
                     min_images: int = MIN_IMAGES) -> tuple:
    """(rates, gaps) of one attribute: each group's rate with its interval, and each readable group's gap from
    the reference group, computed on the same resamples."""
    found = rate_samples(people, attribute, weights)
    rates, gaps = [], []
    for metric in METRICS:
        mine = {group: value for (m, group), value in found.items() if m == metric}
        for group, (estimate, images, samples) in mine.items():
            low, high = interval(samples, level)
            rates.append({"attribute": attribute, "metric": metric, "group": group, "images": images,
                          "estimate": estimate, "low": low, "high": high,
                          "reading": TOO_FEW if images < min_images else ""})
        readable = {group: images for group, (_, images, _) in mine.items() if images >= min_images}
        reference = reference_group(attribute, readable)
        for group in [g for g in mine if g in readable and g != reference]:
            low, high = interval(mine[group][2] - mine[reference][2], level)
            gaps.append({"attribute": attribute, "metric": metric, "gap": f"{group} − {reference}",
                         "estimate": mine[group][0] - mine[reference][0], "low": low, "high": high,
                         "excludes 0": bool(low > 0 or high < 0)})
    return pd.DataFrame(rates), pd.DataFrame(gaps, columns=["attribute", "metric", "gap", "estimate", "low",
                                                            "high", "excludes 0"])


def subgroup_tables(people: pd.DataFrame, n: int = 1000, seed: int = 0, level: float = 0.95,
                    min_images: int = MIN_IMAGES) -> tuple:
    """(rates, gaps) for every attribute, from one set of n patient resamples (people: demographics with pred)."""
    weights = patient_weights(people["Patient ID"], n, seed)
    tables = [attribute_tables(people, attribute, weights, level, min_images) for attribute in ATTRIBUTES]
    return (pd.concat([rates for rates, _ in tables], ignore_index=True),
            pd.concat([gaps for _, gaps in tables], ignore_index=True))


def model_tables(people: pd.DataFrame, predictions: dict, n: int = 1000, seed: int = 0,
                 min_images: int = MIN_IMAGES) -> tuple:
    """(rates, gaps) of every model (name -> its test predictions), with a 'model' column first."""
    rates, gaps = [], []
    for name, frame in predictions.items():
        r, g = subgroup_tables(with_predictions(people, frame), n, seed, min_images=min_images)
        rates.append(r.assign(model=name))
        gaps.append(g.assign(model=name))
    return model_first(pd.concat(rates, ignore_index=True)), model_first(pd.concat(gaps, ignore_index=True))


def model_first(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its 'model' column first."""
    return table[["model", *[c for c in table.columns if c != "model"]]]
