"""The predictions format every layer reads and writes: one row per image, probabilities and logits by class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES


def predictions_frame(ids, y_true, probs, logits=None) -> pd.DataFrame:
    """Per-image predictions keyed by NIH image id: true label, probabilities, predicted label, and the
    logits where given (z_ columns: calibration needs them unclipped, which probabilities cannot give)."""
    probs = np.asarray(probs, float)
    frame = pd.DataFrame({"Image Index": list(ids), "label": np.asarray(y_true, int),
                          **{f"p_{name}": probs[:, k] for k, name in enumerate(CLASSES)},
                          "pred": probs.argmax(axis=1)})
    if logits is not None:
        frame[[f"z_{name}" for name in CLASSES]] = np.asarray(logits, float)
    return frame


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The probability columns of a predictions frame, in CLASSES order."""
    return frame[[f"p_{c}" for c in CLASSES]].to_numpy()


def logits(frame: pd.DataFrame) -> np.ndarray:
    """The logit columns of a predictions frame, in CLASSES order (refused for files saved without them)."""
    columns = [f"z_{c}" for c in CLASSES]
    if not set(columns) <= set(frame.columns):
        raise KeyError("these predictions were saved without logits; re-run the chapter that made them")
    return frame[columns].to_numpy(float)
