"""The training helper: callbacks, history, resuming after a crash, best-model reload."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import pandas as pd

from cxrlib.science.data.pipeline import array_dataset, steps_per_epoch
from cxrlib.science.training import predict, report_callbacks, train


def tiny_model():
    """Dense layers with dropout: a resumed run must also restore the dropout's random state."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.3)(keras.layers.Dense(8, activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(hidden))


def tiny_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    return x, x.argmax(axis=1)


def tiny_inputs(learnable_val=True):
    """train_data(start_epoch) and a validation set, as chapters hand them to train().

    With learnable_val=False the validation labels are shuffled, so validation loss soon stops
    improving: the learning-rate schedule and early stopping then act.
    """
    x, y = tiny_arrays()
    train_data = lambda start: (array_dataset(x, y, 8, shuffle=True, seed=3, start_epoch=start),  # noqa: E731
                                steps_per_epoch(len(x), 8))
    val_y = y if learnable_val else np.random.default_rng(1).permutation(y)
    return train_data, array_dataset(x, val_y, 8)


class Crash(keras.callbacks.Callback):
    """Simulates a crash (Ctrl-C) at the start of a given epoch."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated crash")


def fit(folder, identity="a", crash_at=None, epochs=6, patience=2, learning_rate=5e-2, learnable_val=True):
    train_data, val = tiny_inputs(learnable_val)
    extra = [Crash(crash_at)] if crash_at is not None else []
    return train(tiny_model(), train_data, val, folder, epochs=epochs, patience=patience,
                 learning_rate=learning_rate, identity=identity, extra_callbacks=extra)


def test_report_callbacks_follow_the_report():
    plateau, stop, checkpoint = report_callbacks(__import__("pathlib").Path("/tmp"), "val_loss", 5, 1e-6)
    assert plateau.factor == 0.8 and plateau.patience == 3 and plateau.min_delta == 0.001
    assert stop.patience == 5 and checkpoint.save_best_only


def test_training_returns_history_and_best_model(tmp_path):
    model, history = fit(tmp_path, epochs=3, patience=3)
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"loss", "val_loss", "accuracy", "learning_rate"} <= set(history.columns)
    assert (tmp_path / "best.weights.h5").is_file() and (tmp_path / "backup" / "state.json").is_file()
    again, again_history = fit(tmp_path, epochs=3, patience=3)  # a finished backup: reloaded, not retrained
    pd.testing.assert_frame_equal(history, again_history)
    assert weights_equal(model, again)
    probs, seconds = predict(model, tiny_inputs()[1].map(lambda x, y: x))
    assert probs.shape == (40, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5) and seconds >= 0


def weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("crash_at, spacing", [(1, 0), (4, 0), (4, 10**9)])
def test_resumed_training_equals_an_uninterrupted_run(tmp_path, monkeypatch, crash_at, spacing):
    """Weights, history, learning-rate schedule and early stopping: bit for bit, wherever the crash falls,
    with a backup after every epoch (spacing 0) or only after the first (the epochs since are repeated)."""
    from cxrlib.science.training import Backup

    monkeypatch.setattr(Backup, "SPACING", spacing)
    settings = dict(epochs=30, patience=4, learnable_val=False)
    whole, whole_history = fit(tmp_path / "whole", **settings)
    assert len(whole_history) < 30 and whole_history["learning_rate"].nunique() > 1  # both callbacks acted
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "resumed", crash_at=crash_at, **settings)
    assert (tmp_path / "resumed" / "backup" / "state.json").is_file()
    resumed, resumed_history = fit(tmp_path / "resumed", **settings)
    pd.testing.assert_frame_equal(whole_history, resumed_history)
    assert weights_equal(whole, resumed)


def test_a_backup_of_other_settings_is_discarded(tmp_path, capsys):
    """Interrupted with one identity, re-run with another: trains afresh, as if no backup existed."""
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "run", identity="old settings", crash_at=2, epochs=4, patience=4)
    fresh, fresh_history = fit(tmp_path / "run", identity="new settings", epochs=4, patience=4, learning_rate=1e-2)
    assert "discarding a backup made with other settings" in capsys.readouterr().out
    clean, clean_history = fit(tmp_path / "clean", identity="new settings", epochs=4, patience=4, learning_rate=1e-2)
    pd.testing.assert_frame_equal(fresh_history, clean_history)
    assert weights_equal(fresh, clean)


def test_balanced_class_weights():
    from cxrlib.science.training import class_weights

    weights = class_weights([0, 0, 0, 1, 2, 3], "balanced")
    assert weights == {0: 0.5, 1: 1.5, 2: 1.5, 3: 1.5}
    assert class_weights([0, 1], None) is None
    with pytest.raises(ValueError, match="balanced"):
        class_weights([0], "inverse")


def constant_inputs():
    """Every image the same (zeros), four balanced classes: nothing to learn, the loss sits at ln 4."""
    x, y = np.zeros((40, 4), "float32"), np.arange(40) % 4
    return (lambda start: (array_dataset(x, y, 8, shuffle=True, seed=3, start_epoch=start), steps_per_epoch(40, 8)),
            array_dataset(x, y, 8))


def test_a_model_that_cannot_learn_stops_at_chance_and_says_so(tmp_path):
    from cxrlib.science.training import FLAT_EPOCHS, SPREAD, did_not_learn

    train_data, val = constant_inputs()
    _, history = train(tiny_model(), train_data, val, tmp_path, epochs=20, patience=10, learning_rate=1e-2)
    assert len(history) == FLAT_EPOCHS  # stopped long before early stopping (patience 10) or the 20 epochs
    assert (history[SPREAD] < 1e-6).all() and np.allclose(history["loss"], np.log(4), atol=0.01)
    assert did_not_learn(history)
    again_model, again = train(tiny_model(), train_data, val, tmp_path, epochs=20, patience=10, learning_rate=1e-2)
    pd.testing.assert_frame_equal(history, again)  # the finished backup is reloaded, not trained further


def test_a_model_that_learns_is_not_stopped_nor_flagged(tmp_path):
    from cxrlib.science.training import SPREAD, did_not_learn

    _, history = fit(tmp_path, epochs=6, patience=10)
    assert len(history) == 6 and (history[SPREAD] > 1e-3).all()
    assert history["loss"].iloc[-1] < np.log(4) - 0.1 and not did_not_learn(history)


def test_did_not_learn_reads_the_last_epochs_of_a_history():
    from cxrlib.science.training import FLAT_EPOCHS, SPREAD, did_not_learn

    flat = pd.DataFrame({"loss": [np.log(4)] * FLAT_EPOCHS, SPREAD: [1e-7] * FLAT_EPOCHS})
    assert did_not_learn(flat)
    assert not did_not_learn(flat.iloc[1:])  # too few epochs to tell
    assert not did_not_learn(flat.assign(**{SPREAD: [1e-7, 1e-7, 1e-2]}))  # the last epoch's images differ
    assert not did_not_learn(flat.assign(loss=[np.log(4), np.log(4), 1.2]))  # the loss left chance
    assert not did_not_learn(flat.drop(columns=SPREAD))  # a history from before the spread was recorded


def test_the_page_says_a_model_did_not_learn_and_why_where_its_maps_are_1x1():
    from cxrlib.present.labels import DID_NOT_LEARN, not_learned_text
    from cxrlib.present.plots import plot_history
    from cxrlib.science.training import SPREAD

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, strides=8, padding="same")(inputs)  # 1 x 1 from here on
    x = keras.layers.Conv2D(2, 3, padding="same")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x)))
    flat = pd.DataFrame({"epoch": [0, 1, 2], "loss": [np.log(4)] * 3, "accuracy": [0.25] * 3, SPREAD: [2e-7, 1e-7, 1e-7]})
    text = not_learned_text("The toy", model, flat)
    assert text.startswith(f"**The toy {DID_NOT_LEARN}.** Its training loss stayed at chance (ln 4 = 1.386)")
    assert "by at most 2e-07 for 3 epochs in a row, so training stopped after 3 epochs" in text
    assert "At 8 px the last 1 of its 2 convolutions see 1 x 1 maps" in text
    assert text.endswith("Training shrank that difference (from 2e-07 after the first epoch to 1e-07) instead of growing it.")
    assert not_learned_text("The toy", model, flat.assign(loss=[1.3, 1.1, 0.9])) == ""
    assert plot_history(flat, "Toy")._suptitle.get_text() == f"Toy ({DID_NOT_LEARN})"
