"""The predictions format every layer reads and writes: one row per image, probabilities and logits by class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES

PROBABILITY, LOGIT = "p_", "z_"  # the prefixes of a class's probability and logit columns


def probability_columns(classes=CLASSES) -> list:
    """The probability column of each class ('p_No Finding', ...): the one rule that names them, in classes' order."""
    return [f"{PROBABILITY}{name}" for name in classes]


def column_classes(columns) -> list:
    """The classes whose probabilities some columns hold, in their order (probability_columns read back)."""
    return [column.removeprefix(PROBABILITY) for column in columns if column.startswith(PROBABILITY)]


def predictions_frame(ids, y_true, probs, logits=None) -> pd.DataFrame:
    """Per-image predictions keyed by NIH image id: true label, probabilities, predicted label, and the
    logits where given (z_ columns: calibration needs them unclipped, which probabilities cannot give)."""
    probs = np.asarray(probs, float)
    frame = pd.DataFrame({"Image Index": list(ids), "label": np.asarray(y_true, int),
                          **dict(zip(probability_columns(), probs.T)), "pred": probs.argmax(axis=1)})
    if logits is not None:
        frame[[f"{LOGIT}{name}" for name in CLASSES]] = np.asarray(logits, float)
    return frame


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The probability columns of a predictions frame, in CLASSES order."""
    return frame[probability_columns()].to_numpy()


def logits(frame: pd.DataFrame) -> np.ndarray:
    """The logit columns of a predictions frame, in CLASSES order (refused for files saved without them)."""
    columns = [f"{LOGIT}{c}" for c in CLASSES]
    if not set(columns) <= set(frame.columns):
        raise KeyError("these predictions were saved without logits; re-run the chapter that made them")
    return frame[columns].to_numpy(float)
