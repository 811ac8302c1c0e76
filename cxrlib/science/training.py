"""One training helper for every model: the report's callbacks, resumable, with a saved history."""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from cxrlib.core.manifest import check
from cxrlib.science.calibration import balancing_offsets, softmax


class EpochLine(keras.callbacks.Callback):
    """Progress that reads well in a rendered notebook: one line per epoch, with timing."""

    def __init__(self, name: str, epochs: int):
        super().__init__()
        self.name, self.epochs, self.started, self.rate = name, epochs, time.perf_counter(), None

    def on_epoch_end(self, epoch, logs=None):
        """Print losses, accuracies and the learning rate after each epoch, and a plain sentence when
        ReduceLROnPlateau (silent: verbose=0) has just lowered the learning rate."""
        logs = logs or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
        elapsed = time.perf_counter() - self.started
        print(f"[{self.name}] epoch {epoch + 1}/{self.epochs}: {shown} ({elapsed:.0f}s)", flush=True)
        before, self.rate = self.rate, self.learning_rate()
        if before is not None and self.rate is not None and self.rate < before * (1 - 1e-6):
            print(f"[{self.name}] learning rate lowered from {before:.3g} to {self.rate:.3g} (no recent improvement)",
                  flush=True)

    def on_train_begin(self, logs=None):
        """Remember the learning rate the fit starts from."""
        self.rate = self.learning_rate()

    def learning_rate(self):
        """The optimizer's current learning rate (None where the model has none)."""
        try:
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return None


BEST = "best.weights.h5"  # the best epoch's weights, in each model's training folder


def report_callbacks(folder: Path, monitor: str, patience: int, min_lr: float, best_so_far=None):
    """ReduceLROnPlateau (factor 0.8, patience*6/10), EarlyStopping and best-only checkpointing."""
    return [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.8, patience=max(1, int(patience * 6 / 10)),
                                          min_lr=min_lr, min_delta=0.001, verbose=0),  # EpochLine says it in words
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience),
        # weights only: the optimizer's state (twice the weights) is kept by the backup, not here
        keras.callbacks.ModelCheckpoint(folder / BEST, monitor=monitor, save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=best_so_far),
    ]


# A fit whose training loss stays within CHANCE_TOLERANCE of chance, ln(classes), while its probabilities vary by less
# than FLAT_SPREAD between images, for FLAT_EPOCHS epochs in a row, has learned nothing: StopAtChance stops it there.
CHANCE_TOLERANCE, FLAT_SPREAD, FLAT_EPOCHS = 0.01, 1e-4, 3
SPREAD = "prediction_spread"  # the history's column: how much the predicted probabilities vary between images


def at_chance(loss: float, spread: float, classes: int) -> bool:
    """Whether one epoch sits at chance: training loss ln(classes), the same probabilities for every image."""
    return abs(loss - np.log(classes)) < CHANCE_TOLERANCE and spread < FLAT_SPREAD


def did_not_learn(history: pd.DataFrame, classes: int = 4) -> bool:
    """Whether a training history ends with FLAT_EPOCHS epochs at chance (where StopAtChance stops a fit)."""
    tail = history.tail(FLAT_EPOCHS)
    return (SPREAD in tail and len(tail) == FLAT_EPOCHS
            and all(at_chance(loss, spread, classes) for loss, spread in tail[["loss", SPREAD]].values))


class StopAtChance(keras.callbacks.Callback):
    """Stops a fit that has learned nothing, instead of letting it run out its epochs: early stopping never
    fires on a loss that stays at chance but moves in its fourth decimal. Each epoch's spread of the predicted
    probabilities over a few validation images (about 1% of an epoch's time) goes into the logs, so the saved
    history shows why it stopped."""

    def __init__(self, probe):
        super().__init__()
        self.probe, self.flat, self.stopped_epoch = probe, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        """Measure the spread; stop after FLAT_EPOCHS epochs in a row at chance."""
        probs = keras.ops.convert_to_numpy(self.model(self.probe, training=False))
        logs[SPREAD] = spread = float(probs.std(axis=0).max())
        self.flat = self.flat + 1 if at_chance(logs["loss"], spread, probs.shape[1]) else 0
        if self.flat >= FLAT_EPOCHS:
            self.model.stop_training, self.stopped_epoch = True, epoch


def read_history(path: Path) -> pd.DataFrame:
    """A history CSV, keeping the last record of any epoch repeated."""
    if not Path(path).is_file():
        return pd.DataFrame()
    return pd.read_csv(path).drop_duplicates("epoch", keep="last").reset_index(drop=True)


def class_weights(labels, mode) -> dict | None:
    """Keras class weights: None/'none', or 'balanced' (n / (classes * n_class)) for imbalanced training sets; any
    other mode is refused as the manifest refuses it (a library caller passes it unchecked)."""
    if check("class_weight", mode) == "none":
        return None
    counts = np.bincount(np.asarray(labels), minlength=4)
    return {k: float(len(labels) / (len(counts) * c)) for k, c in enumerate(counts) if c}


# What each of the report's callbacks must carry over a resume, so that a resumed run stops and
# lowers its learning rate exactly where an uninterrupted one would.
CALLBACK_STATE = {
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
    keras.callbacks.ModelCheckpoint: ("best",),
    StopAtChance: ("flat", "stopped_epoch"),
}


def _plain(value):
    """A callback attribute as JSON (numpy scalars, infinities)."""
    return None if value is None else float(value) if np.ndim(value) == 0 else value


def seed_variables(model) -> list:
    """The random-number states of every layer (dropout, augmentation), nested ones included, in a fixed order:
    model.variables holds them beside the weights, which are all that a weights file keeps."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class Backup(keras.callbacks.BackupAndRestore):
    """The whole training state in one folder, swapped in atomically at the end of an epoch.

    Keras's BackupAndRestore keeps weights, optimizer state and epoch; this adds the layers' random states
    (seeds.npz), the history and the callbacks' counters (state.json), an identity (another identity's backup is
    never resumed), a staged write (into backup.new, swapped in whole) and spacing: after the first epoch, then once
    the time since the last is SPACING times what writing took (at most ~1/SPACING of training), and after the last
    epoch; a resumed run repeats the epochs since, with the same result.
    """

    SPACING = 20

    def __init__(self, folder: Path, identity: str, watched, history: list, restore_from=None):
        self.live = Path(folder)
        super().__init__(self.live.with_name(self.live.name + ".new"), delete_checkpoint=False)
        self.identity, self.watched, self.history, self.restore_from = identity, watched, history, restore_from
        self.saved_epoch, self.cost, self.last = None, 0.0, time.perf_counter()

    def on_train_begin(self, logs=None):
        """Keras restores weights, optimizer and epoch from a copy of the backup (the backup itself stays whole);
        the random states and the callbacks' counters, which fit resets as it starts, are put back here."""
        staged = Path(self.backup_dir)
        shutil.rmtree(staged, ignore_errors=True)
        if self.restore_from:
            shutil.copytree(self.live, staged)
            super().on_train_begin(logs)
            for callback in self.watched:
                for key, value in self.restore_from.get(type(callback).__name__, {}).items():
                    setattr(callback, key, value)
            with np.load(staged / "seeds.npz") as seeds:
                for i, variable in enumerate(seed_variables(self.model)):
                    variable.assign(seeds[f"arr_{i}"])
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        """Record the epoch; write the backup when it is due."""
        self.history.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        if self.saved_epoch is None or time.perf_counter() - self.last >= self.SPACING * self.cost:
            self.save(epoch, logs)

    def on_train_end(self, logs=None):
        """The finished state too, so a chapter that fails later reloads this model instead of training it again."""
        if self.history and self.saved_epoch != self.history[-1]["epoch"]:
            self.save(self.history[-1]["epoch"], logs)

    def save(self, epoch: int, logs=None) -> None:
        """Keras's backup of this epoch, seeds and state into backup.new, then swapped in."""
        started, staged = time.perf_counter(), Path(self.backup_dir)
        shutil.rmtree(staged, ignore_errors=True)
        super().on_epoch_end(epoch, logs)  # Keras writes weights, optimizer state and epoch
        np.savez(staged / "seeds.npz", *[keras.ops.convert_to_numpy(v) for v in seed_variables(self.model)])
        state = {"identity": self.identity, "epochs_done": epoch + 1, "history": self.history,
                 **{type(c).__name__: {k: _plain(getattr(c, k, None)) for k in CALLBACK_STATE[type(c)]}
                    for c in self.watched}}
        (staged / "state.json").write_text(json.dumps(state, default=_plain))
        shutil.rmtree(self.live, ignore_errors=True)
        os.replace(staged, self.live)
        self.saved_epoch, self.last = epoch, time.perf_counter()
        self.cost = self.last - started


def read_backup(folder: Path, identity: str, name: str):
    """The saved state of an interrupted fit of this identity, or None (another identity's is discarded)."""
    folder = Path(folder)
    fresh, saved = folder.with_name(folder.name + ".new"), folder / "state.json"
    if not folder.is_dir() and (fresh / "state.json").is_file():
        os.replace(fresh, folder)  # a crash fell between writing the new backup and swapping it in
    state = json.loads(saved.read_text()) if saved.is_file() else {}
    if state.get("identity") != identity:
        if state:
            print(f"[{name}] discarding a backup made with other settings, data or code; training afresh")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return state


def train(model, train_data, val_ds, folder: Path, *, epochs: int, patience: int,
          learning_rate: float = 1e-4, monitor: str = "val_loss", min_lr: float = 1e-7,
          compile_model: bool = True, name: str = "model", extra_callbacks=(), class_weight=None,
          identity: str = "unnamed", run_eagerly: bool = False):
    """Fit with Adam and sparse categorical cross-entropy; resume after a crash; return the best model.

    train_data(start_epoch) returns (dataset, steps per epoch): an endless, epoch-aware training
    pipeline whose order depends only on the seed and the epoch, so a resumed run sees the batches an
    uninterrupted one would. run_eagerly skips tracing a graph, which costs more than it saves when a
    deep net trains for a handful of steps (the smoke profile). folder keeps the best weights and a backup of this
    identity after every epoch: an interrupted fit continues after its last finished epoch, and a finished one (kept
    until the chapter's results are in place) is reloaded without training again.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backup = folder / "backup"
    state = read_backup(backup, identity, name)
    if state:
        print(f"[{name}] resuming after epoch {state['epochs_done']} from {backup}")
    else:
        (folder / BEST).unlink(missing_ok=True)
    if compile_model:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.run_eagerly = run_eagerly
    start = state["epochs_done"] if state else 0
    history = list(state["history"]) if state else []
    probe = next(iter(val_ds.unbatch().batch(8)))[0]  # a few validation images, whatever the batch size
    watched = [*report_callbacks(folder, monitor, patience, min_lr), StopAtChance(probe)]
    saver = Backup(backup, identity, watched, history, restore_from=state)
    train_ds, steps = train_data(start)
    stopped = state and any(state.get(k, {}).get("stopped_epoch") for k in ("EarlyStopping", "StopAtChance"))
    if start < epochs and not stopped:
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=start, steps_per_epoch=steps,
                  callbacks=[*watched, EpochLine(name, epochs), *extra_callbacks, saver], verbose=0,
                  class_weight=class_weight, shuffle=False)  # the pipeline shuffles, by epoch
    elif getattr(model, "optimizer", None) is not None:
        model.optimizer.build(model.trainable_variables)  # the best weights carry its state: loading them then warns
    if (folder / BEST).is_file():
        model.load_weights(folder / BEST)
    return model, pd.DataFrame(history)


def predict(model, dataset):
    """Class probabilities and the wall-clock seconds the prediction took (the report's inference time)."""
    started = time.perf_counter()
    probs = model.predict(dataset, verbose=0)
    return np.asarray(probs, dtype=float), time.perf_counter() - started


def all_layers(model):
    """Every layer of a model, nested models' layers included, in order."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def classifier_layer(model):
    """The softmax Dense layer that ends the model: the one named 'classifier' (every model of the book),
    else the last Dense with a softmax; None where there is neither."""
    layers = list(all_layers(model))
    named = [layer for layer in layers if layer.name == "classifier"]
    dense = [layer for layer in layers
             if isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.softmax]
    return (named or dense or [None])[-1]


def predict_with_logits(model, dataset):
    """(probabilities, logits, seconds): one prediction with the classifier's softmax switched off, so the
    logits come out exact (a float32 softmax rounds small probabilities to 0, and their logs cannot be
    recovered); the probabilities are their softmax in float64."""
    classifier = classifier_layer(model)
    if classifier is None or classifier.activation is not keras.activations.softmax:
        raise ValueError(f"model {model.name} has no softmax layer named 'classifier' to take logits from")
    model.predict_function = None  # a compiled prediction would keep the softmax
    classifier.activation = keras.activations.linear
    try:
        logits, seconds = predict(model, dataset)
    finally:
        classifier.activation = keras.activations.softmax
        model.predict_function = None
    return softmax(logits), logits, seconds


def balance(model, val_ds, val_labels, class_weight: str = "none") -> np.ndarray:
    """Fold calibration.balancing_offsets of the validation logits into the classifier's biases, so that every later
    prediction (saved model, Grad-CAM's predicted class, ensembles) decides for the prior the model was trained for:
    the balanced classes of class weights ('balanced'), else the classes' validation shares; the offsets."""
    _, logits, _ = predict_with_logits(model, val_ds)
    shares = np.full(logits.shape[1], 1 / logits.shape[1]) if class_weight == "balanced" else None
    offsets = balancing_offsets(logits, val_labels, shares)
    bias = classifier_layer(model).bias
    bias.assign(keras.ops.convert_to_numpy(bias) + offsets.astype(np.float32))
    return offsets


def distribution_scope():
    """Mirror training over every GPU when there are several; otherwise the default strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy().scope() if len(gpus) > 1 else nullcontext()


def set_mixed_precision(enabled: bool) -> str:
    """float16 compute on a GPU when asked; CPUs gain nothing from it, so they stay float32."""
    policy = "mixed_float16" if enabled and tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def set_determinism(enabled: bool) -> bool:
    """TensorFlow's deterministic ops, for bit-identical reruns (a GPU pays in speed; full may turn it off)."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
    return enabled
