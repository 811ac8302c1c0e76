"""The training helper: callbacks, history, resuming after a crash, best-model reload."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrlib.training import predict, read_history, report_callbacks, train


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Dense(8)(inputs)))


def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = x.argmax(axis=1)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


class Crash(keras.callbacks.Callback):
    """Simulates a crash at the start of a given epoch."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated crash")


def test_report_callbacks_follow_the_report():
    plateau, stop, checkpoint = report_callbacks(__import__("pathlib").Path("/tmp"), "val_loss", 5, 1e-6)
    assert plateau.factor == 0.8 and plateau.patience == 3 and plateau.min_delta == 0.001
    assert stop.patience == 5 and checkpoint.save_best_only


def test_training_writes_history_and_best_model(tmp_path):
    data = tiny_data()
    model, history = train(tiny_model(), data, data, tmp_path, epochs=3, patience=2, learning_rate=1e-2)
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"loss", "val_loss", "accuracy", "learning_rate"} <= set(history.columns)
    assert (tmp_path / "best.keras").is_file() and not (tmp_path / "backup").exists()
    probs, seconds = predict(model, data.map(lambda x, y: x))
    assert probs.shape == (32, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5) and seconds >= 0


def test_interrupted_training_resumes_from_last_epoch(tmp_path):
    data = tiny_data()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), data, data, tmp_path, epochs=5, patience=5, extra_callbacks=[Crash(at=2)])
    assert (tmp_path / "backup").is_dir()
    assert list(read_history(tmp_path / "history.csv")["epoch"]) == [0, 1]
    _, history = train(tiny_model(), data, data, tmp_path, epochs=5, patience=5)
    assert list(history["epoch"]) == [0, 1, 2, 3, 4]


def test_balanced_class_weights():
    from cxrlib.training import class_weights

    weights = class_weights([0, 0, 0, 1, 2, 3], "balanced")
    assert weights == {0: 0.5, 1: 1.5, 2: 1.5, 3: 1.5}
    assert class_weights([0, 1], None) is None
    with pytest.raises(ValueError, match="balanced"):
        class_weights([0], "inverse")
