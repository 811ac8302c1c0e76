"""Error analysis (report section 5): which test images every model misses, and what each gets alone."""
from __future__ import annotations

import pandas as pd

from cxrlib import runs
from cxrlib.config import CLASSES

# The report's five best models, each found by (chapter, model-name prefix); the last match wins,
# so a deeper fine tuning is preferred over a shallower one and over the features-only head.
REPORT_MODELS = {
    "VGG16": ("pretrained", "vgg16_"),
    "ResNet152": ("pretrained", "resnet152_"),
    "CheXNet": ("pretrained", "chexnet_"),
    "Fused": ("fused", "fused"),
    "CNN from scratch": ("scratch", "second_cnn"),
}


def best_models(profile: str, split: str = "test", root=None) -> dict:
    """label -> 'chapter/model' for each of the report's five models that some chapter has saved."""
    available = sorted(runs.prediction_files(profile, split, root))
    chosen = {}
    for label, (chapter, prefix) in REPORT_MODELS.items():
        matches = [key for key in available if key.startswith(f"{chapter}/{prefix}")]
        finetuned = [key for key in matches if "finetune" in key]
        if finetuned or matches:
            chosen[label] = (finetuned or matches)[-1]
    return chosen


def missing_models_message(chosen: dict) -> str:
    """Which of the report's models are absent, and which chapter would produce them."""
    absent = [f"{label} (run: cxr run {REPORT_MODELS[label][0]})" for label in REPORT_MODELS if label not in chosen]
    return "All five of the report's models are present." if not absent else "Missing: " + "; ".join(absent)


def correctness(predictions: dict) -> pd.DataFrame:
    """Image id x model: True where the model's predicted class is the true one (images all models saw)."""
    frames = [frame.set_index("Image Index") for frame in predictions.values()]
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index)
    table = pd.DataFrame({name: frame.loc[common, "pred"] == frame.loc[common, "label"]
                          for name, frame in zip(predictions, frames)})
    table.insert(0, "label", frames[0].loc[common, "label"])
    return table


def summary(correct: pd.DataFrame):
    """(counts of all-wrong and all-right images, per-model table of what only it misses / gets right)."""
    hits = correct.drop(columns="label")
    totals = pd.Series({"misclassified by all the models": int((~hits).all(axis=1).sum()),
                        "correctly classified by all the models": int(hits.all(axis=1).sum()),
                        "images": len(hits)}, name="images")
    only = pd.DataFrame({
        "misclassified only by this model": [int((~hits[m] & hits.drop(columns=m).all(axis=1)).sum()) for m in hits],
        "correctly classified only by this model": [int((hits[m] & ~hits.drop(columns=m).any(axis=1)).sum())
                                                    for m in hits],
        "accuracy": [float(hits[m].mean()) for m in hits],
    }, index=pd.Index(hits.columns, name="model"))
    return totals.to_frame(), only


def pick(correct: pd.DataFrame, all_wrong: bool, per_class: int = 4) -> pd.DataFrame:
    """Up to per_class images of each class that every model misses (or every model gets right)."""
    hits = correct.drop(columns="label")
    chosen = correct[(~hits).all(axis=1) if all_wrong else hits.all(axis=1)]
    return pd.concat([chosen[chosen["label"] == k].head(per_class) for k in range(len(CLASSES))])
