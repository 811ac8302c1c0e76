"""Error analysis (report section 5): which test images every model misses, and what each gets alone."""
from __future__ import annotations

import pandas as pd

from cxrlib import runs
from cxrlib.config import CLASSES
from cxrlib.metrics import macro_f1

# The report's five best models, each found by (chapter, model-name prefix). Every saved candidate is
# scored on the validation set and the best macro F1 wins; ties go to the model the report preferred
# (report_preference), never to a test score.
REPORT_MODELS = {
    "VGG16": ("pretrained", "vgg16_"),
    "ResNet152": ("pretrained", "resnet152_"),
    "CheXNet": ("pretrained", "chexnet_"),
    "Fused": ("fused", "fused"),
    "CNN from scratch": ("scratch", "second_cnn"),
}


def report_preference(key: str) -> int:
    """Rank of a candidate in the report's own preference (0 first): its deepest fine tuning first,
    then shallower ones in the report's order reversed, then the features-only head."""
    from cxrlib.models.backbones import BACKBONES

    model = key.split("/", 1)[1]
    for name, spec in BACKBONES.items():
        points = list(reversed(spec.unfreeze))
        if model.startswith(f"{name}_finetune_"):
            layer = model.removeprefix(f"{name}_finetune_")
            return points.index(layer) if layer in points else len(points)
    return 100


def candidates(profile: str, root=None) -> dict:
    """label -> every 'chapter/model' saved for one of the report's five models (with validation predictions)."""
    available = sorted(runs.prediction_files(profile, "val", root))
    found = {}
    for label, (chapter, prefix) in REPORT_MODELS.items():
        matches = [key for key in available if key.startswith(f"{chapter}/{prefix}")]
        if matches:
            found[label] = sorted(matches, key=lambda key: (report_preference(key), key))
    return found


def model_choice(profile: str, root=None, load=None) -> pd.DataFrame:
    """One row per report model: the candidate with the best validation macro F1, its score and the others'.

    load(keys, split) -> {key: predictions frame} (a chapter's checked `predictions`); default: the run folder.
    """
    load = load or (lambda keys, split: runs.load_predictions(profile, split, root, keys=keys))
    rows = {}
    for label, keys in candidates(profile, root).items():
        frames = load(keys, "val")
        scores = {key: macro_f1(frames[key]["label"], frames[key]["pred"]) for key in keys}
        best = max(keys, key=lambda key: scores[key])  # max keeps the first of equals: the report's preference
        rows[label] = {"chosen": best, "validation macro F1": scores[best],
                       "candidates (validation macro F1)": ", ".join(f"{k.split('/')[1]} {scores[k]:.4f}" for k in keys)}
    return pd.DataFrame(rows).T.rename_axis("model") if rows else pd.DataFrame(
        columns=["chosen", "validation macro F1", "candidates (validation macro F1)"])


def best_models(profile: str, root=None, load=None) -> dict:
    """label -> 'chapter/model' for each of the report's five models: the best on validation macro F1."""
    return model_choice(profile, root, load)["chosen"].to_dict()


def without_weights(weights_text: str) -> set:
    """Backbones the pretrained chapter's weights record names as trained without pretrained weights."""
    from cxrlib.book import model_label
    from cxrlib.models.backbones import BACKBONES

    return {name for name, spec in BACKBONES.items() if model_label(spec.title, False) in (weights_text or "")}


def key_pretrained(key: str, weights_text: str) -> bool:
    """False for a 'chapter/model' built on a backbone without pretrained weights (an ensemble: any member)."""
    unweighted = without_weights(weights_text)
    chapter, _, model = key.partition("/")
    if chapter == "ensemble":
        return not unweighted
    return not (chapter == "pretrained" and model.split("_")[0] in unweighted)


def display_label(label: str, key: str, weights_text: str) -> str:
    """A model's label as every table, figure and legend shows it (book.model_label's tag where it had
    no pretrained weights)."""
    from cxrlib.book import model_label

    return model_label(label, key_pretrained(key, weights_text))


def display_labels(ch, chosen: dict) -> dict:
    """Report label -> display label, for the models chosen (tagged where no pretrained weights were used)."""
    weights = runs.chapter_infos(ch.profile, ch.runs_root).get("pretrained", {}).get("weights", "")
    return {label: display_label(label, key, weights) for label, key in chosen.items()}


def missing_models_message(chosen: dict) -> str:
    """Which of the report's models are absent, and which chapter would produce them; when none is, the models
    by name and their number (the report's ensemble had six members: two CheXNet fine tunings)."""
    absent = [f"{label} (run: cxr run {REPORT_MODELS[label][0]})" for label in REPORT_MODELS if label not in chosen]
    if absent:
        return "Missing: " + "; ".join(absent)
    return f"All {len(REPORT_MODELS)} models of the report's error analysis are present: {', '.join(REPORT_MODELS)}."


def predicted_classes(predictions: dict) -> pd.Series:
    """Model -> which classes it predicts (metrics.predicted_classes: 'all 4', 'only Effusion', ...), for a table
    that shows the models beside what they get right or wrong."""
    from cxrlib.metrics import PREDICTED, predicted_classes as words

    return pd.Series({name: words(frame["pred"]) for name, frame in predictions.items()}, name=PREDICTED)


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


def image_model(ch, key: str):
    """The saved model of 'chapter/model' that takes images: a features-only head is joined to its backbone
    (saved by the pretrained chapter as '<model>_on_images'), so Grad-CAM can explain it."""
    import keras

    chapter, name = key.split("/", 1)
    model = ch.earlier_model(chapter, name)
    if model.input.shape[-1] in (1, 3):
        return model
    run = runs.ChapterRun(ch.profile, chapter, ch.runs_root)
    path = run.live_file("models", f"{name}_on_images.keras")
    if not path.is_file():
        raise FileNotFoundError(f"{key} takes backbone features, and {path} (it joined to its backbone) is missing; "
                                f"run: cxr run {chapter} --profile {ch.profile} --force")
    return keras.models.load_model(path, compile=False)


def chosen_models(ch, chosen: dict) -> dict:
    """Display label (tagged where no pretrained weights were used) -> the chosen model, taking images."""
    labels = display_labels(ch, chosen)
    return {labels[label]: image_model(ch, key) for label, key in chosen.items()}
