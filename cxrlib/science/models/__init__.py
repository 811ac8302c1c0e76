"""Model builders: learnable resizer, fused/base nets, CNNs from scratch."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.science.models.fused import fused_net
from cxrlib.science.models.resizer import learnable_resizer
from cxrlib.science.models.scratch import first_cnn, second_cnn

__all__ = ["count_params", "first_cnn", "fused_net", "learnable_resizer", "load", "second_cnn"]


def count_params(model) -> dict:
    """Total, trainable and non-trainable parameters, as Keras's summary prints them."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"total": trainable + frozen, "trainable": trainable, "non_trainable": frozen}


def summary_table(model) -> pd.DataFrame:
    """Layer, output shape and parameter count, like Keras's summary but as a DataFrame."""
    rows = [{"layer": layer.name, "type": type(layer).__name__, "output shape": str(tuple(layer.output.shape)),
             "params": layer.count_params()} for layer in model.layers]
    return pd.DataFrame(rows)


def load(path, compile: bool = False):
    """A saved model, this library's custom layers known to Keras (compile: with its optimizer, to resume)."""
    import keras

    return keras.models.load_model(path, compile=compile)
