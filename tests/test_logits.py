"""Predictions keep the classifier's exact logits, where a float32 softmax rounds probabilities to 0."""
from __future__ import annotations

import numpy as np
import pytest

from cxrlib.machinery import runs
from cxrlib.science import calibration

KERNEL = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 0.0, -2.0, 1.0]], np.float32)


def tiny(nested: bool):
    """Two inputs -> Dense 'classifier' with a softmax, directly or inside a nested head."""
    import keras

    inputs = keras.Input((2,))
    head_in = keras.Input((2,))
    classifier = keras.layers.Dense(4, activation="softmax", name="classifier", dtype="float32")
    head = keras.Model(head_in, classifier(head_in), name="head")
    model = keras.Model(inputs, head(inputs) if nested else classifier(inputs))
    classifier.set_weights([KERNEL, np.zeros(4, np.float32)])
    return model


@pytest.mark.parametrize("nested", [False, True])
def test_predictions_carry_exact_logits(nested, tmp_path):
    import keras

    from cxrlib.science import training

    x = np.array([[300.0, 0.0], [0.0, 1.0], [-100.0, 50.0]], np.float32)
    expected = x.astype(float) @ KERNEL.astype(float)
    model = tiny(nested)
    with np.errstate(divide="ignore"):
        assert np.isinf(np.log(model.predict(x, verbose=0))).any()  # the float32 softmax underflows
    probs, logits, _ = training.predict_with_logits(model, x)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    np.testing.assert_allclose(probs, calibration.softmax(expected), rtol=1e-6, atol=1e-300)
    # the model is left as it was: its softmax back, a saved and reloaded copy gives the same logits
    np.testing.assert_allclose(model.predict(x, verbose=0), calibration.softmax(expected), atol=1e-6)
    model.save(tmp_path / "m.keras")
    again = training.predict_with_logits(keras.models.load_model(tmp_path / "m.keras"), x)[1]
    np.testing.assert_allclose(again, expected, rtol=1e-6)


def test_predictions_frame_keeps_logits_and_files_without_them_are_refused(tmp_path):
    logits = np.array([[0.0, -900.0, 3.0, 1.0], [2.0, 1.0, 0.0, -1.0]])
    frame = runs.predictions_frame(["a.png", "b.png"], [1, 0], calibration.softmax(logits), logits)
    runs.ChapterRun("smoke", "fused", tmp_path).save_predictions("fused", "val", frame)
    loaded = runs.load_predictions("smoke", "val", tmp_path)["fused/fused"]
    np.testing.assert_array_equal(runs.logits(loaded), logits)  # bit for bit through the CSV
    assert calibration.negative_log_likelihood([1], runs.logits(loaded)[:1]) > 900
    with pytest.raises(KeyError, match="without logits"):
        runs.logits(runs.predictions_frame(["a.png"], [0], np.eye(4)[[0]]))
