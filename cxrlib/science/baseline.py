"""What the labels alone predict: a classifier that never sees a pixel, trained on the fields of NIH's label file.

NIH's file records, for every image, the patient's age and sex, the view position, the follow-up number, the
original size and the pixel spacing. None of these is the lung, yet each can carry the class: a bedside AP film
means a sicker patient, a patient who keeps coming back is ill, scanners differ between wards. Models trained on
ChestX-ray14 are known to learn such shortcuts (Zech et al., PLOS Medicine 2018; Oakden-Rayner et al., 2020;
DeGrave et al., Nature Machine Intelligence 2021), so this model is what an image model must beat before its
pixels can be said to help. It is scikit-learn's gradient boosting, class-weighted, its few hyperparameters chosen
on validation by science.choice, like every model of the book.

>>> trivial_baselines([0, 0, 1], 2, seed=0)["always No Finding"].tolist()
[[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance

from cxrlib.core.config import CLASSES
from cxrlib.core.errors import DataError
from cxrlib.science.choice import choose
from cxrlib.science.data.splits import assert_patient_disjoint, split_patients
from cxrlib.science.metrics import macro_f1
from cxrlib.science.subgroups import known_ages

# every one a column of NIH's label file, or counted from it (their words: present.baseline.FIELDS)
FEATURES = ("age", "sex", "AP view", "follow-up number", "width", "height", "pixel spacing x", "pixel spacing y",
            "patient's images")
HISTORY = ("follow-up number", "patient's images")  # what the patient's history, not the film, says
FRACTIONS = (0.6, 0.2, 0.2)  # patient shares of fit, validation and held out
# the grid chosen on validation: small, since the model is a yardstick, not a contender
GRID = {f"learning rate {rate}, {leaves} leaves": {"learning_rate": rate, "max_leaf_nodes": leaves}
        for rate in (0.1, 0.3) for leaves in (7, 31)}
ROUNDS = 50  # boosting rounds (trees per class)
TRIVIAL = ("always No Finding", "random guess (training shares)")


def features(nih: pd.DataFrame) -> pd.DataFrame:
    """FEATURES of every row of NIH's label file (all 112,120 rows: the image count runs over all of them),
    indexed by image id."""
    table = pd.DataFrame({
        "age": known_ages(nih["Patient Age"]).to_numpy(),
        "sex": nih["Patient Gender"].astype(str).str.strip().str.upper().map({"M": 1.0, "F": 0.0}),
        "AP view": nih["View Position"].astype(str).str.strip().str.upper().map({"AP": 1.0, "PA": 0.0}),
        "follow-up number": pd.to_numeric(nih["Follow-up #"], errors="coerce"),
        "width": pd.to_numeric(nih["OriginalImage[Width"], errors="coerce"),
        "height": pd.to_numeric(nih["Height]"], errors="coerce"),
        "pixel spacing x": pd.to_numeric(nih["OriginalImagePixelSpacing[x"], errors="coerce"),
        "pixel spacing y": pd.to_numeric(nih["y]"], errors="coerce"),
        "patient's images": nih.groupby("Patient ID")["Image Index"].transform("size").astype(float),
    })
    return table.set_axis(nih["Image Index"].astype(str)).rename_axis("Image Index")


def split_rows(rows: pd.DataFrame, ours: pd.DataFrame, seed: int, fractions=FRACTIONS) -> pd.DataFrame:
    """The single-label rows (with 'label' and 'Patient ID') less every patient of our validation and test
    splits (ours: our split table), dealt by patient into train, val and test ('split'; present.baseline.PARTS)."""
    scored = set(ours.loc[ours["split"].isin(["val", "test"]), "Patient ID"].astype(int))
    kept = rows[~rows["Patient ID"].astype(int).isin(scored)]
    split = split_patients(kept, fractions, seed)
    assert_apart(split, ours[ours["split"].isin(["val", "test"])])
    return split


def assert_apart(mine: pd.DataFrame, scored: pd.DataFrame) -> None:
    """Refuse a baseline that trains on a patient it is scored on (our validation or test splits), and a
    split of its own that gives a patient to two parts."""
    assert_patient_disjoint(mine)
    shared = set(mine["Patient ID"].astype(int)) & set(scored["Patient ID"].astype(int))
    if shared:
        raise DataError(f"the labels-only baseline would train on {len(shared)} patient(s) of our validation or "
                        f"test split, e.g. {', '.join(map(str, sorted(shared)[:5]))}")


def train(X, y, settings: dict, seed: int) -> HistGradientBoostingClassifier:
    """One class-weighted gradient-boosted classifier (each class weighs as much as the others in the loss)."""
    model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed, early_stopping=False,
                                           max_iter=ROUNDS, **settings)
    return model.fit(np.asarray(X, float), np.asarray(y, int))


def tune(X_fit, y_fit, X_val, y_val, seed: int, grid: dict = GRID) -> tuple:
    """(the grid's setting with the best validation macro F1 (science.choice), its model, every setting's
    validation macro F1)."""
    models = {key: train(X_fit, y_fit, settings, seed) for key, settings in grid.items()}
    scores = pd.Series({key: macro_f1(y_val, model.predict(np.asarray(X_val, float)))
                        for key, model in models.items()}, name="validation macro F1")
    chosen = choose(scores)
    return chosen, models[chosen], scores


def settings(model) -> dict:
    """The grid's settings of a trained model (to train it again on other fields)."""
    return {key: value for key, value in model.get_params().items() if key in ("learning_rate", "max_leaf_nodes")}


def probabilities(model, X) -> tuple:
    """(probabilities, logits) of every row, in CLASSES order (the logits are the boosting's raw scores)."""
    X = np.asarray(X, float)
    return model.predict_proba(X), model.decision_function(X)


def importance(model, X, y, seed: int, repeats: int = 5) -> pd.DataFrame:
    """How much macro F1 each field carries: the drop when its values are shuffled across rows (permutation
    importance, scikit-learn), mean and spread over repeats; largest first."""
    found = permutation_importance(model, np.asarray(X, float), np.asarray(y, int), scoring="f1_macro",
                                   n_repeats=repeats, random_state=seed)
    table = pd.DataFrame({"drop in macro F1": found.importances_mean, "spread (sd)": found.importances_std},
                         index=pd.Index(list(FEATURES), name="field"))
    return table.sort_values("drop in macro F1", ascending=False)


def balanced(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows with every class cut down to the rarest class's count (seeded), like the report's test set."""
    smallest = rows["label"].value_counts().min()
    parts = [rows[rows["label"] == k].sample(smallest, random_state=seed) for k in sorted(rows["label"].unique())]
    return pd.concat(parts).sort_index()


def trivial_baselines(y_train, n_rows: int, seed: int) -> dict:
    """The two rows every results table shows beside the models: name -> (n_rows, classes) probabilities.

    'always No Finding' answers the training split's majority class for every image (scikit-learn's
    DummyClassifier, most_frequent); 'random guess (training shares)' draws each image's class at random in the
    training split's class shares (stratified, seeded). Neither looks at the image: a model no better than them
    has learnt nothing usable.
    """
    y_train = np.asarray(y_train, int)
    found = {}
    for name, strategy in zip(TRIVIAL, ("most_frequent", "stratified")):
        dummy = DummyClassifier(strategy=strategy, random_state=seed).fit(np.zeros((len(y_train), 1)), y_train)
        probs = np.zeros((n_rows, len(CLASSES)))
        probs[:, dummy.classes_] = dummy.predict_proba(np.zeros((n_rows, 1)))
        found[name] = probs
    return found
