"""One training helper for every model: the report's callbacks, resumable, with a saved history."""
from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import keras
import numpy as np
import pandas as pd


class EpochLine(keras.callbacks.Callback):
    """Progress that reads well in a rendered notebook: one line per epoch, with timing."""

    def __init__(self, name: str, epochs: int):
        super().__init__()
        self.name, self.epochs, self.started = name, epochs, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        """Print losses, accuracies and the learning rate after each epoch."""
        logs = logs or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
        elapsed = time.perf_counter() - self.started
        print(f"[{self.name}] epoch {epoch + 1}/{self.epochs}: {shown} ({elapsed:.0f}s)", flush=True)


def report_callbacks(folder: Path, monitor: str, patience: int, min_lr: float, best_so_far=None):
    """ReduceLROnPlateau (factor 0.8, patience*6/10), EarlyStopping and best-only checkpointing."""
    return [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.8, patience=max(1, int(patience * 6 / 10)),
                                          min_lr=min_lr, min_delta=0.001, verbose=1),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience),
        keras.callbacks.ModelCheckpoint(folder / "best.keras", monitor=monitor, save_best_only=True,
                                        initial_value_threshold=best_so_far),
    ]


def read_history(path: Path) -> pd.DataFrame:
    """A CSVLogger file, keeping the last record of any epoch repeated by a resumed run."""
    if not Path(path).is_file():
        return pd.DataFrame()
    history = pd.read_csv(path)
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def class_weights(labels, mode) -> dict | None:
    """Keras class weights: None/'none', or 'balanced' (n / (classes * n_class)) for imbalanced training sets."""
    if mode in (None, "none"):
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {mode!r}")
    counts = np.bincount(np.asarray(labels), minlength=4)
    return {k: float(len(labels) / (len(counts) * c)) for k, c in enumerate(counts) if c}


def train(model, train_ds, val_ds, folder: Path, *, epochs: int, patience: int,
          learning_rate: float = 1e-4, monitor: str = "val_loss", min_lr: float = 1e-7,
          compile_model: bool = True, name: str = "model", extra_callbacks=(), class_weight=None):
    """Fit with Adam and sparse categorical cross-entropy; resume after a crash; return the best model.

    folder keeps best.keras, history.csv and, while training runs, a backup that lets an
    interrupted fit continue from its last finished epoch.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backup, history_csv = folder / "backup", folder / "history.csv"
    resuming = backup.is_dir()
    if not resuming:
        for stale in (history_csv, folder / "best.keras"):
            stale.unlink(missing_ok=True)
    else:
        print(f"[{name}] resuming from the backup in {backup}")
    if compile_model:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    past = read_history(history_csv)
    best = float(past[monitor].min()) if resuming and monitor in past else None
    callbacks = report_callbacks(folder, monitor, patience, min_lr, best) + [
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        EpochLine(name, epochs),
        *extra_callbacks,
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=0,
              class_weight=class_weight,
              shuffle=False)  # the tf.data pipeline shuffles
    shutil.rmtree(backup, ignore_errors=True)
    best_path = folder / "best.keras"
    if best_path.is_file():
        model.load_weights(best_path)
    return model, read_history(history_csv)


def predict(model, dataset):
    """Class probabilities and the wall-clock seconds the prediction took (the report's inference time)."""
    started = time.perf_counter()
    probs = model.predict(dataset, verbose=0)
    return np.asarray(probs, dtype=float), time.perf_counter() - started


def distribution_scope():
    """Mirror training over every GPU when there are several; otherwise the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy().scope() if len(gpus) > 1 else nullcontext()


def set_mixed_precision(enabled: bool) -> str:
    """float16 compute on a GPU when asked; CPUs gain nothing from it, so they stay float32."""
    import tensorflow as tf

    policy = "mixed_float16" if enabled and tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
