"""Hyperband's search space (Li et al. 2018, keras-tuner) over the head of the second from-scratch CNN (report 3.3),
and what its trials say. The search itself, in one process or many, is cxrlib.machinery.parallel's.

Search space: 1-3 dense layers, dropout 0-0.5, 1024-4096 units in steps of 512, learning rate
1e-3, 1e-4 or 1e-5.
"""
from __future__ import annotations

import hashlib
import json
import math

import keras
import pandas as pd

from cxrlib.science.models import second_cnn

LEARNING_RATES = (1e-3, 1e-4, 1e-5)


def mlp_from(hp) -> list:
    """The (units, dropout) layers a set of hyperparameters describes."""
    return [(hp.get("units"), hp.get("dropout"))] * hp.get("layers")


def trial_seed(seed: int, values: dict) -> int:
    """One trial's seed, from the run's seed and its hyperparameters (Hyperband's bracket and round among them): a
    trial draws the same weights whichever trials ran before it, in this process or on another worker."""
    return int(hashlib.sha256(f"{seed}|{json.dumps(values, sort_keys=True, default=str)}".encode()).hexdigest()[:8], 16)


def hypermodel(image_size: int, resize_to: int, seed: int = 42):
    """A keras-tuner build function: it frees the previous trial's graph, then seeds the trial's own draws."""
    def build(hp):
        keras.backend.clear_session()
        hp.Int("layers", 1, 3)
        hp.Float("dropout", 0.0, 0.5)
        hp.Int("units", 1024, 4096, step=512)
        hp.Choice("learning_rate", list(LEARNING_RATES))
        keras.utils.set_random_seed(trial_seed(seed, hp.values))
        model = second_cnn(image_size=image_size, resize_to=resize_to, mlp=mlp_from(hp))
        model.compile(optimizer=keras.optimizers.Adam(hp.get("learning_rate")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    return build


def trials_table(tuner) -> pd.DataFrame:
    """Every trial: its hyperparameters, epochs and best validation loss, best first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        rows.append({"trial": trial.trial_id, "layers": values.get("layers"), "dropout": values.get("dropout"),
                     "units": values.get("units"), "learning_rate": values.get("learning_rate"),
                     "epochs": values.get("tuner/epochs"), "val_loss": trial.score, "status": str(trial.status)})
    return pd.DataFrame(rows).sort_values("val_loss").reset_index(drop=True)


def best_hyperparameters(tuner) -> dict:
    """The winning configuration as plain values."""
    hp = tuner.get_best_hyperparameters(1)[0]
    return {name: hp.get(name) for name in ("layers", "dropout", "units", "learning_rate")}


# A validation loss within this much of ln(classes) is a model that says the same for every image.
CHANCE_TOLERANCE = 0.02


def chance_loss(classes: int = 4) -> float:
    """The cross-entropy of a model that gives every class the same probability: ln(classes)."""
    return math.log(classes)


def all_at_chance(trials: pd.DataFrame, classes: int = 4, tolerance: float = CHANCE_TOLERANCE) -> bool:
    """Whether every finished trial's best validation loss lies within tolerance of chance: nothing to choose."""
    losses = pd.to_numeric(trials["val_loss"], errors="coerce").dropna()
    return bool(len(losses)) and bool((losses >= chance_loss(classes) - tolerance).all())
