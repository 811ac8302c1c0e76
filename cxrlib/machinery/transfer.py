"""Section 4 of the report as one procedure per backbone: feature extraction, then fine tuning."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras

from cxrlib.core.manifest import FINE_TUNE_AUGMENT
from cxrlib.machinery import weights as weight_files
from cxrlib.machinery.features import extract, feature_key
from cxrlib.machinery.inputs import SPLITS
from cxrlib.present.labels import model_label
from cxrlib.science.data.pipeline import array_dataset
from cxrlib.science.models import backbones


@dataclass
class BackboneRun:
    """What one backbone produced: the weights it started from and a Result per trained model."""

    name: str
    weights: weight_files.Weights
    results: dict = field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        """Whether it started from pretrained weights."""
        return self.weights.pretrained

    @property
    def label(self) -> str:
        """The backbone's title, tagged (labels.model_label) wherever no pretrained weights were used."""
        return model_label(backbones.spec(self.name).title, self.pretrained)

    def model_label(self, model_name: str) -> str:
        """One of this backbone's trained models as tables and figures show it (tagged likewise)."""
        return model_label(model_name, self.pretrained)


def weights_fields(name: str, used) -> dict:
    """A backbone's Weights as the fields chapter.json keeps."""
    return {"title": backbones.spec(name).title, "pretrained": used.pretrained, "short": used.short, "long": used.long}


def planned_weights(ch) -> dict:
    """Before anything trains: the weights each backbone of the chapter will start from (backbone -> fields)."""
    return {name: weights_fields(name, weight_files.planned_weights(name, ch["chexnet_weights"]))
            for name in ch["backbones"]}


def weights_digest(ch, name: str) -> str:
    """The content hash of the weights file a backbone starts from, so a replaced file is never reused."""
    path = (weight_files.chexnet_weights_path(ch["chexnet_weights"]) if name == "chexnet"
            else weight_files.keras_cache_file(name))
    if not path or not Path(path).is_file():
        return "no file"
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:20]


def load_backbone(ch, name: str):
    """The pretrained (or, where allowed, seeded random) backbone at the chapter's input size."""
    keras.utils.set_random_seed(ch["seed"])
    return weight_files.pretrained_backbone(name, ch["backbone_size"], ch["allow_random_weights"],
                                         ch["chexnet_weights"], allow_partial=ch["allow_partial_weights"])


def backbone_features(ch, name: str, base, weights: str) -> dict:
    """Features of every split, computed once and cached (they depend on weights, size and images)."""
    size = ch["backbone_size"]
    extractor = keras.Sequential([*backbones.preprocessing(backbones.spec(name).preprocessing), base])
    return {split: extract(lambda batch: extractor(batch, training=False), ch.data.images(split, size),
                           feature_key(name, size, weights, weights_digest(ch, name), ch["seed"], ch.data_id,
                                       tuple(ch.data.split(split)["Image Index"])),
                           ch["batch_size"], desc=f"{name} features, {split}")
            for split in SPLITS}


def fine_tune_points(name: str, choice: str) -> tuple:
    """Which unfreeze points to train: none, the first (cheapest) or all of the report's."""
    points = backbones.spec(name).unfreeze
    return {"none": (), "first": points[:1], "all": points}[choice]


def run_backbone(ch, name: str) -> BackboneRun:
    """Train the report's head on cached features, then fine-tune from each chosen layer."""
    base, used = load_backbone(ch, name)
    # the full text (with where to place a missing file) for the log; the page's summary box has the short form
    print(f"{backbones.spec(name).title}: {used.long}", file=sys.stderr)
    ch.record_weights(name, weights_fields(name, used))
    run = BackboneRun(name, used)
    features = backbone_features(ch, name, base, used.long)
    spec = {"backbone": name, "size": ch["backbone_size"], "weights": used.long,
            "weights_content": weights_digest(ch, name)}
    top = ch.fit(f"{name}_features", lambda: backbones.head(name, features["train"].shape[1:]),
                 lambda split, shuffle, start=0: array_dataset(features[split], ch.data.labels(split),
                                                               ch["batch_size"], shuffle, ch["seed"], start),
                 {**spec, "stage": "features"}, learning_rate=ch["feature_learning_rate"])
    run.results[f"{name}_features"] = evaluate_on_images(ch, name, base, top)
    augment = fine_tune_augments(name, ch["fine_tune_augment"])
    for layer in fine_tune_points(name, ch["fine_tune"]):
        model_name = f"{name}_finetune_{layer}"
        run.results[model_name] = ch.fit(
            model_name, lambda layer=layer: fine_tune_model(ch, name, top.model, layer, augment),
            lambda split, shuffle, start=0: ch.dataset(split, ch["backbone_size"], shuffle, start_epoch=start),
            {**spec, "stage": "fine tuning", "from": layer, "augment": augment}, epochs=ch["fine_tune_epochs"],
            learning_rate=ch["fine_tune_learning_rate"], upstream=[top.identity])
    return run


def images_model_name(name: str) -> str:
    """Where the features head joined to its backbone is saved: the model that takes images."""
    return f"{name}_features_on_images"


def evaluate_on_images(ch, name: str, base, top):
    """Re-evaluate the features head joined to its frozen backbone, on images: the same predictions, but the
    inference time now includes the backbone, as the report's does; the joined model is saved for Grad-CAM."""
    joined = backbones.full_model(name, base, top.model, ch["backbone_size"])
    timed = ch.evaluate(f"{name}_features", joined,
                        lambda split, shuffle, start=0: ch.dataset(split, ch["backbone_size"], shuffle),
                        top.history)
    ch.run.save_model(joined, images_model_name(name))
    top.metrics, top.predictions = timed.metrics, timed.predictions
    return top


def fine_tune_augments(name: str, choice: str) -> bool:
    """Whether fine tuning augments: as the report did for this backbone ('report'), 'always' or 'never'."""
    if choice not in FINE_TUNE_AUGMENT:
        raise ValueError(f"fine_tune_augment is {choice!r}; allowed: {', '.join(FINE_TUNE_AUGMENT)}")
    return {"report": backbones.spec(name).fine_tune_augment, "always": True, "never": False}[choice]


def fine_tune_model(ch, name: str, trained_head, layer: str, augment: bool = False):
    """A fresh copy of the backbone, the trained head on top, optional augmentation, and from layer on thawed."""
    base, _ = load_backbone(ch, name)
    top = keras.models.clone_model(trained_head)
    top.set_weights(trained_head.get_weights())
    model = backbones.full_model(name, base, top, ch["backbone_size"], augment=augment)
    backbones.unfreeze_from(base, layer)
    return model
