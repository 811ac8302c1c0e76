"""Hyperband search (Li et al. 2018, keras-tuner) over the head of the second from-scratch CNN (report 3.3).

Search space: 1-3 dense layers, dropout 0-0.5, 1024-4096 units in steps of 512, learning rate
1e-3, 1e-4 or 1e-5. Trials live in the run folder, so an interrupted search resumes.
"""
from __future__ import annotations

from pathlib import Path

import keras
import pandas as pd

from cxrlib.models import second_cnn
from cxrlib.training import EpochLine

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


def search(train_ds, val_ds, folder: Path, *, image_size: int, resize_to: int, max_epochs: int,
           factor: int = 3, iterations: int = 1, seed: int = 42, patience: int = 5, tag: str = ""):
    """Run (or resume) the search; returns the tuner.

    tag (e.g. the data fingerprint and batch size) joins the settings in the project's name, so a
    changed setting starts a new search instead of resuming a stale one.
    """
    import hashlib

    import keras_tuner

    settings = f"{image_size}|{resize_to}|{max_epochs}|{factor}|{iterations}|{seed}|{patience}|{tag}"
    project = "second_cnn_" + hashlib.sha256(settings.encode()).hexdigest()[:12]
    tuner = keras_tuner.Hyperband(hypermodel(image_size, resize_to), objective="val_loss", max_epochs=max_epochs,
                                  factor=factor, hyperband_iterations=iterations, seed=seed,
                                  directory=str(folder), project_name=project, overwrite=False)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    tuner.search(train_ds, validation_data=val_ds, callbacks=[stop, EpochLine("trial", max_epochs)], verbose=0)
    failed = [t for t in tuner.oracle.trials.values() if str(t.status) != "COMPLETED"]
    if failed or not tuner.oracle.trials:
        reason = failed[0].message if failed else "no trial ran"
        raise RuntimeError(f"{len(failed)} Hyperband trial(s) failed: {reason}")
    return tuner


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


def plot_trials(trials: pd.DataFrame, title: str = "Hyperband trials"):
    """Validation loss of every trial against its units, one colour per learning rate."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    done = trials.dropna(subset=["val_loss"])
    for rate, group in done.groupby("learning_rate"):
        ax.scatter(group["units"], group["val_loss"], s=30 + 30 * group["layers"], alpha=0.7, label=f"lr {rate:g}")
    ax.set(title=title, xlabel="units per dense layer (marker size: layers)", ylabel="best validation loss")
    ax.legend()
    fig.tight_layout()
    return fig
