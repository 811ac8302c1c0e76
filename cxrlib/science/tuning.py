"""Hyperband search (Li et al. 2018, keras-tuner) over the head of the second from-scratch CNN (report 3.3).

Search space: 1-3 dense layers, dropout 0-0.5, 1024-4096 units in steps of 512, learning rate
1e-3, 1e-4 or 1e-5. Trials live in the run folder, so an interrupted search resumes.
"""
from __future__ import annotations

from pathlib import Path

import keras
import pandas as pd

from cxrlib.science.models import second_cnn
from cxrlib.science.training import EpochLine

LEARNING_RATES = (1e-3, 1e-4, 1e-5)


def mlp_from(hp) -> list:
    """The (units, dropout) layers a set of hyperparameters describes."""
    return [(hp.get("units"), hp.get("dropout"))] * hp.get("layers")


def hypermodel(image_size: int, resize_to: int):
    """A keras-tuner build function; it frees the previous trial's graph before building the next."""
    def build(hp):
        keras.backend.clear_session()
        hp.Int("layers", 1, 3)
        hp.Float("dropout", 0.0, 0.5)
        hp.Int("units", 1024, 4096, step=512)
        hp.Choice("learning_rate", list(LEARNING_RATES))
        model = second_cnn(image_size=image_size, resize_to=resize_to, mlp=mlp_from(hp))
        model.compile(optimizer=keras.optimizers.Adam(hp.get("learning_rate")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    return build


def _recorded_hyperband():
    """keras_tuner.Hyperband whose every finished trial is logged with the tuner (worker) that ran it."""
    import keras_tuner

    class Recorded(keras_tuner.Hyperband):
        def on_trial_end(self, trial):
            """Log who ran the trial, then let keras-tuner finish it."""
            with open(Path(self.project_dir) / "trials_run.txt", "a") as log:
                log.write(f"{self.tuner_id} {trial.trial_id}\n")
            super().on_trial_end(trial)

    return Recorded


def project_name(image_size: int, resize_to: int, max_epochs: int, factor: int, iterations: int, seed: int,
                 patience: int, tag: str) -> str:
    """The search's folder name: every setting in a hash, so a changed one starts a new search."""
    import hashlib

    settings = f"{image_size}|{resize_to}|{max_epochs}|{factor}|{iterations}|{seed}|{patience}|{tag}"
    return "second_cnn_" + hashlib.sha256(settings.encode()).hexdigest()[:12]


def open_tuner(folder: Path, *, image_size: int, resize_to: int, max_epochs: int, factor: int = 3,
               iterations: int = 1, seed: int = 42, patience: int = 5, tag: str = ""):
    """The Hyperband tuner of these settings; it reloads whatever the folder already holds.

    Under keras-tuner's distributed mode (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and _PORT set) it is
    the chief's oracle or a worker that asks the chief for trials; otherwise a local search.
    """
    project = project_name(image_size, resize_to, max_epochs, factor, iterations, seed, patience, tag)
    return _recorded_hyperband()(hypermodel(image_size, resize_to), objective="val_loss", max_epochs=max_epochs,
                                 factor=factor, hyperband_iterations=iterations, seed=seed,
                                 directory=str(folder), project_name=project, overwrite=False)


def read_search(folder: Path, **settings):
    """The tuner of a finished (e.g. distributed) search, with the trials its chief oracle saved."""
    import os

    roles = {k: os.environ.pop(k) for k in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
             if k in os.environ}
    try:
        tuner = open_tuner(folder, **settings)  # a local reader, never a worker of a running chief
    finally:
        os.environ.update(roles)
    if (Path(tuner.project_dir) / "oracle.json").is_file():
        tuner.oracle.reload()
    return tuner


def search(train_ds, val_ds, folder: Path, *, image_size: int, resize_to: int, max_epochs: int,
           factor: int = 3, iterations: int = 1, seed: int = 42, patience: int = 5, tag: str = "",
           class_weight=None, steps_per_epoch=None):
    """Run (or resume) the search; returns the tuner.

    tag (e.g. the data fingerprint and batch size) joins the settings in the project's name, so a
    changed setting starts a new search instead of resuming a stale one. class_weight is the final
    training's (cxrlib.science.training.class_weights), so trials are judged on the loss the model will train on.
    """
    from keras_tuner.src.distribute import utils as distributed

    tuner = open_tuner(folder, image_size=image_size, resize_to=resize_to, max_epochs=max_epochs, factor=factor,
                       iterations=iterations, seed=seed, patience=patience, tag=tag)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    tuner.search(train_ds, validation_data=val_ds, callbacks=[stop, EpochLine("trial", max_epochs)], verbose=0,
                 class_weight=class_weight, steps_per_epoch=steps_per_epoch)
    if distributed.has_chief_oracle() and not distributed.is_chief_oracle():
        return tuner  # a worker: the chief holds the trials
    check_trials(tuner)
    return tuner


def check_trials(tuner):
    """Every trial completed; otherwise one error naming how many failed and the first reason."""
    failed = [t for t in tuner.oracle.trials.values() if str(t.status) != "COMPLETED"]
    if failed or not tuner.oracle.trials:
        reason = failed[0].message if failed else "no trial ran"
        raise RuntimeError(f"{len(failed)} Hyperband trial(s) failed: {reason}")


def trials_run(tuner) -> pd.DataFrame:
    """Which tuner (worker) ran which trial, from the search folder's log; one row per trial run."""
    log = Path(tuner.project_dir) / "trials_run.txt"
    lines = log.read_text().split("\n") if log.is_file() else []
    return pd.DataFrame([line.split() for line in lines if line.strip()], columns=["tuner", "trial"])


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
    import math

    return math.log(classes)


def all_at_chance(trials: pd.DataFrame, classes: int = 4, tolerance: float = CHANCE_TOLERANCE) -> bool:
    """Whether every finished trial's best validation loss lies within tolerance of chance: nothing to choose."""
    losses = pd.to_numeric(trials["val_loss"], errors="coerce").dropna()
    return bool(len(losses)) and bool((losses >= chance_loss(classes) - tolerance).all())
