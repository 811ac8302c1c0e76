"""Which misclassified images a (model, true class, predicted class) choice picks, and what a caption may claim
about them: the one selection the live widget, the book's static twin and the browser's cache share."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from cxrlib.core import frames
from cxrlib.core.config import CLASSES

ALL_MODELS = "all models"
ANY = "any"


def vote(classes: list) -> int:
    """The class most models chose; ties go to the first model's (the 'all models' row's rule everywhere)."""
    return Counter(classes).most_common(1)[0][0]  # equal counts keep their first-seen order


class Selection:
    """Which images a (model, true class, predicted class) choice picks, and their probabilities."""

    def __init__(self, predictions: dict):
        indexed = {name: frame.set_index("Image Index") for name, frame in predictions.items()}
        common = sorted(set.intersection(*(set(f.index) for f in indexed.values())))
        self.frames = {name: frame.loc[common] for name, frame in indexed.items()}
        self.ids = common

    @property
    def models(self) -> list:
        """Model names, in the order given."""
        return list(self.frames)

    def predicted(self, model: str) -> np.ndarray:
        """A model's predicted class per image; for 'all models', the class most models predicted
        (ties: the first model's), so an image every model got wrong never reads 'predicted <true class>'."""
        if model != ALL_MODELS:
            return self.frames[model]["pred"].to_numpy()
        preds = np.array([f["pred"].to_numpy() for f in self.frames.values()])
        return np.array([vote(list(column)) for column in preds.T])

    def image_probabilities(self, image_id: str) -> pd.DataFrame:
        """Every model's probabilities for one image: a row per model, a column per class (what captions show)."""
        return pd.DataFrame([frames.probabilities(f.loc[[image_id]])[0] for f in self.frames.values()],
                            index=self.models, columns=list(CLASSES))

    def agreement(self, image_id: str, class_index: int) -> int:
        """How many models predict class_index for one image (what an 'all models' caption may claim)."""
        return int(sum(int(frame.loc[image_id, "pred"]) == int(class_index) for frame in self.frames.values()))

    def claim(self, model: str, image_id: str, class_index: int) -> str:
        """'predicted Effusion by VGG16', or for 'all models' how many of them predict it, counted from the data
        ('by 2 of 5 models'; 'by all 5 models' only when every one does)."""
        claim = f"predicted {CLASSES[int(class_index)]} by "
        if model != ALL_MODELS:
            return claim + model
        agreeing, total = self.agreement(image_id, class_index), len(self.frames)
        return claim + (f"all {total} models" if agreeing == total else f"{agreeing} of {total} models")

    def pick(self, model: str, true_class: str = ANY, predicted: str = ANY) -> pd.DataFrame:
        """Misclassified images of one model (or of every model) filtered by true and predicted class."""
        labels = next(iter(self.frames.values()))["label"].to_numpy()
        models = self.models if model == ALL_MODELS else [model]
        keep = np.all([self.frames[m]["pred"].to_numpy() != labels for m in models], axis=0)
        pred = self.predicted(model)
        if true_class != ANY:
            keep &= labels == CLASSES.index(true_class)
        if predicted != ANY:
            keep &= pred == CLASSES.index(predicted)
        return pd.DataFrame({"Image Index": np.asarray(self.ids)[keep], "label": labels[keep], "pred": pred[keep]})
