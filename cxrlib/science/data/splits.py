"""Patient-disjoint, class-balanced, seeded train/validation/test splits."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, REPORT_FIRST_TRAIN_SIZE
from cxrlib.core.errors import DataError
from cxrlib.core.manifest import SPLITS, check


def split_patients(table: pd.DataFrame, fractions=(0.6, 0.2, 0.2), seed: int = 42) -> pd.DataFrame:
    """Give every patient to one split, stratified by each patient's rarest class.

    Patients are grouped by the rarest class among their images (so small classes spread
    over all splits), shuffled with the seed, and dealt out by cumulative image counts.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    rarity = table["label"].map(table["label"].value_counts())
    patient_class = table.assign(rarity=rarity).sort_values("rarity").groupby("Patient ID")["label"].first()
    sizes = table.groupby("Patient ID").size()
    bounds = np.cumsum(fractions)[:2]
    assignment = {}
    for _, patients in patient_class.groupby(patient_class):
        order = rng.permutation(patients.index.to_numpy())
        share = np.cumsum(sizes.loc[order].to_numpy()) / sizes.loc[order].sum()
        # the midpoint of each patient's share of images decides its split
        middle = share - sizes.loc[order].to_numpy() / (2 * sizes.loc[order].sum())
        for patient, where in zip(order, np.searchsorted(bounds, middle, side="right")):
            assignment[patient] = SPLITS[where]
    out = table.copy()
    out["split"] = out["Patient ID"].map(assignment)
    assert_patient_disjoint(out)
    return out


def limit_per_patient(table: pd.DataFrame, cap=None, seed: int = 42) -> pd.DataFrame:
    """Keep at most `cap` images of each patient, chosen with the seed (None: all).

    In a small sample one patient can supply most of a class's test images (the shipped sample holds a patient
    with 14 Effusion images); that patient's images are correlated, so the split would rest on one person.
    """
    if not cap:
        return table
    shuffled = table.sample(frac=1.0, random_state=seed)
    return table.loc[shuffled.groupby("Patient ID", sort=False).head(cap).index.sort_values()]


def patient_shares(table: pd.DataFrame, splits=("val", "test")) -> pd.DataFrame:
    """Per split and class: images, patients, and the largest share of them that one patient supplies."""
    rows = []
    for (split, label), cell in table[table["split"].isin(splits)].groupby(["split", "label"]):
        per_patient = cell.groupby("Patient ID").size()
        rows.append({"split": split, "class": CLASSES[label], "images": len(cell), "patients": len(per_patient),
                     "largest share of one patient": per_patient.max() / len(cell),
                     "that patient": per_patient.idxmax()})
    return pd.DataFrame(rows)


def patients_over_share(table: pd.DataFrame, largest=None) -> pd.DataFrame:
    """The (split, class) cells of validation and test where one patient supplies more than `largest` of the images
    (or more than one image, where the class has too few for that share to allow one); empty for None."""
    shares = patient_shares(table)
    if largest is None or shares.empty:
        return shares.iloc[:0]
    counts = (shares["largest share of one patient"] * shares["images"]).round().astype(int)
    return shares[counts > np.maximum(1, np.floor(largest * shares["images"] + 1e-9))]


def assert_patient_disjoint(table: pd.DataFrame) -> None:
    """A patient in two splits leaks test information into training: refuse it."""
    per_patient = table.groupby("Patient ID")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        raise DataError(f"{len(leaking)} patient(s) appear in more than one split, "
                        f"e.g. {', '.join(map(str, leaking.index[:5]))}")


def apply_caps(table: pd.DataFrame, caps=None, seed: int = 42, training_set: str = "more") -> pd.DataFrame:
    """Keep at most caps[split][class] images per split (the report's set sizes), chosen with the seed.

    training_set="first" scales the training caps down to the report's first set of 7,996 images.
    """
    if not caps:
        return table
    caps = {s: dict(c) for s, c in caps.items()}
    if check("training_set", training_set) == "first" and "train" in caps:
        scale = REPORT_FIRST_TRAIN_SIZE / sum(caps["train"].values())
        caps["train"] = {c: int(round(n * scale)) for c, n in caps["train"].items()}
    return limit_per_class(table, caps, seed)


def smaller_set(train: pd.DataFrame, caps, training_set: str, seed: int, draw_seed: int) -> tuple:
    """(mask of the training images, whether it is the report's first training set) for "does more data help?":
    that first set (7,996 images in its class shares) where the run uses the larger one, else half the training
    patients with all their images (a patient's images are correlated), drawn with draw_seed."""
    if isinstance(caps, dict) and isinstance(caps.get("train"), dict) and training_set == "more":
        first = apply_caps(train, {"train": caps["train"]}, seed, "first")
        if len(first) < len(train):  # a partial download may hold fewer images than the first set
            return train.index.isin(first.index), True
    patients = np.unique(train["Patient ID"].astype(str))
    half = np.random.default_rng(draw_seed).choice(patients, max(1, len(patients) // 2), replace=False)
    return train["Patient ID"].astype(str).isin(half).to_numpy(), False


def limit_per_class(table: pd.DataFrame, limits, seed: int = 42) -> pd.DataFrame:
    """Sample down each (split, class) cell to its limit; cells without a limit are kept whole."""
    if not limits:
        return table
    if isinstance(limits, int):  # one number: the same limit for every split and class
        limits = {split: limits for split in SPLITS}
    parts = []
    for (split, label), cell in table.groupby(["split", "label"], sort=False):
        limit = limits.get(split)
        limit = limit.get(CLASSES[label]) if isinstance(limit, dict) else limit
        parts.append(cell if limit is None or len(cell) <= limit else cell.sample(limit, random_state=seed))
    return pd.concat(parts).sort_index()


def split_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Images per class and split, the layout of the report's figures 1-3."""
    counts = pd.crosstab(table["Finding Labels"], table["split"])
    return counts.reindex(index=list(CLASSES), columns=list(SPLITS), fill_value=0)


def check_splits(table: pd.DataFrame, min_per_split: int = 1, where: str = "the data") -> None:
    """Every class needs at least min_per_split images in every split, or training and scoring mean nothing."""
    if not isinstance(min_per_split, int) or isinstance(min_per_split, bool) or min_per_split < 1:
        raise ValueError(f"min_per_split must be a whole number >= 1, got {min_per_split!r}")
    counts = table.groupby(["split", "label"]).size().to_dict()
    short = [f"{name} has {counts.get((s, k), 0)} in {s}" for s in SPLITS for k, name in enumerate(CLASSES)
             if counts.get((s, k), 0) < min_per_split]
    if short:
        raise DataError(f"too few images per class and split in {where}: {', '.join(short)}; every class needs "
                        f"at least {min_per_split} (min_per_split) in every split. Use more images, other "
                        f"fractions, or a lower min_per_split")
