"""Section 4 of the report as one procedure per backbone: the report's flow of heads on features computed once,
then fine tuning from the head it kept; each step of the flow, and more data, asked again on validation."""
from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cxrlib.machinery import runs as run_files
from cxrlib.machinery import weights as weight_files
from cxrlib.machinery.features import extract, feature_key
from cxrlib.machinery.inputs import SPLITS
from cxrlib.present.claims import answer, units
from cxrlib.present.labels import model_label
from cxrlib.present.report import FLOW_QUESTIONS, MORE_DATA
from cxrlib.science.choice import choose
from cxrlib.science.data.pipeline import array_dataset, steps_per_epoch
from cxrlib.science.data.splits import smaller_set
from cxrlib.science.metrics import macro_f1
from cxrlib.science.models import backbones, count_params
from cxrlib.science.stats import Bootstrap

# Seed streams of this module's random draws, each derived from the run's seed with its own key.
AUGMENTED_STREAM, SMALLER_STREAM, BOOTSTRAP_STREAM = 1, 2, 3
FINDINGS_FILE = "findings.csv"  # the flows' answers, read again by the conclusions
FINDINGS_COLUMNS = ["step", "question", "report's answer", "our answer", "difference", "low", "high", "images",
                    "patients"]


def stream_seed(seed: int, *keys) -> int:
    """A seed of its own for one kind of draw, derived from the run's seed and the draw's keys."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] >> 1)


@dataclass
class HeadFit:
    """One head of a backbone's flow, trained on cached features (validation probabilities after balancing)."""

    head: backbones.Head
    history: pd.DataFrame
    params: int
    val_probs: np.ndarray


@dataclass
class BackboneRun:
    """What one backbone produced: the weights it started from and a Result per trained model."""

    name: str
    weights: weight_files.Weights
    results: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)  # section -> HeadFit, the report's flow in its order
    scores: dict = field(default_factory=dict)  # section -> validation macro F1
    chosen: str = ""  # the section validation chooses among the heads
    smaller: HeadFit | None = None  # the chosen head trained on a smaller training set
    smaller_text: str = ""  # that set, in words

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


def extractor(name: str, base):
    """The frozen backbone behind its own preprocessing, in inference mode, on RGB images in [0, 255]."""
    model = keras.Sequential([*backbones.preprocessing(backbones.spec(name).preprocessing), base])
    return lambda batch: model(batch, training=False)


def features_key(ch, name: str, weights: str, split: str, *more) -> str:
    """The cache key of one split's features: backbone, size, weights and their content, seed, data and images."""
    return feature_key(name, ch["backbone_size"], weights, weights_digest(ch, name), ch["seed"], ch.data_id,
                       tuple(ch.data.split(split)["Image Index"]), *more)


def backbone_features(ch, name: str, base, weights: str) -> dict:
    """Features of every split, computed once and cached (they depend on weights, size and images)."""
    return {split: extract(extractor(name, base), ch.data.images(split, ch["backbone_size"]),
                           features_key(ch, name, weights, split), ch["batch_size"], desc=f"{name} features, {split}")
            for split in SPLITS}


def augmented_features(ch, name: str, base, weights: str):
    """The backbone's features, pooled to 1 x 1, of `augmented_copies` augmented copies of the training images,
    copy after copy (each seeded and cached); None where no head of the flow augments. A head with augmentation
    reads copy e mod copies in epoch e: as the report's augmentation, without running the base every epoch."""
    from cxrlib.science.models.augment import augmentation

    if not any(head.augment for head in backbones.spec(name).heads):
        return None
    features, copies = extractor(name, base), []
    for copy in range(ch["augmented_copies"]):
        augment = augmentation(seed=stream_seed(ch["seed"], AUGMENTED_STREAM, copy))

        def pooled(batch, augment=augment):
            return keras.ops.mean(features(augment(batch, training=True)), axis=(1, 2), keepdims=True)
        copies.append(extract(pooled, ch.data.images("train", ch["backbone_size"]),
                              features_key(ch, name, weights, "train", "augmented", copy), ch["batch_size"],
                              desc=f"{name} features, augmented copy {copy + 1}"))
    return np.concatenate(copies)


def head_inputs(ch, head, features: dict, augmented, keep=None):
    """inputs(split, shuffle, start_epoch) for one head: the cached features, the augmented copies in training
    where the head augments; keep (a mask of the training images) trains it on part of them."""
    labels = {split: np.asarray(ch.data.labels(split)) for split in SPLITS}
    keep = np.ones(len(labels["train"]), bool) if keep is None else np.asarray(keep, bool)
    copies = ch["augmented_copies"] if head.augment else 1
    train = augmented.reshape(copies, len(keep), *augmented.shape[1:]) if head.augment else features["train"][None]
    train = train[:, keep].reshape(-1, *train.shape[2:])

    def inputs(split, shuffle, start=0):
        if split == "train":
            return array_dataset(train, labels["train"][keep], ch["batch_size"], shuffle, ch["seed"], start, copies)
        return array_dataset(features[split], labels[split], ch["batch_size"], shuffle, ch["seed"], start)
    return inputs


def fit_head(ch, name: str, head, features: dict, augmented, keep=None) -> HeadFit:
    """Train one head of the flow as every model trains (seeded, the report's callbacks, class weights and
    balancing as the profile says), in seconds, and keep only its log and validation probabilities."""
    training = ch.training()
    labels = np.asarray(ch.data.labels("train"))[keep if keep is not None else slice(None)]
    inputs = head_inputs(ch, head, features, augmented, keep)
    folder = ch.run.file("work", f"{name}_flow")
    shutil.rmtree(folder, ignore_errors=True)  # never resume another head
    keras.utils.set_random_seed(ch["seed"])
    model, history = training.train(
        backbones.head(name, features["train"].shape[1:], head),
        lambda start: (inputs("train", True, start), steps_per_epoch(len(labels), ch["batch_size"])),
        inputs("val", False), folder, epochs=ch["epochs"], patience=ch["patience"],
        learning_rate=ch["feature_learning_rate"], identity=head.section,
        name=f"{name} {head.section}" + (" on fewer images" if keep is not None else ""),
        class_weight=training.class_weights(labels, ch["class_weight"]), run_eagerly=ch["run_eagerly"])
    shutil.rmtree(folder, ignore_errors=True)
    if ch["balance_predictions"]:
        training.balance(model, inputs("val", False), ch.data.labels("val"), ch["class_weight"])
    probs, _, _ = training.predict_with_logits(model, inputs("val", False))
    return HeadFit(head, history, count_params(model)["total"], probs)


def smaller_training_set(ch) -> tuple:
    """(mask of the training images, in words) for "does more data help?" (smaller_set), on a seed stream of its own."""
    train = ch.data.split("train")
    draw = stream_seed(ch["seed"], SMALLER_STREAM)
    keep, first = smaller_set(train, ch["caps"], ch["training_set"], ch["seed"], draw)
    if first:
        return keep, f"the report's first training set ({keep.sum():,} images)"
    patients = train.loc[keep, "Patient ID"].astype(str).nunique()
    return keep, f"half the training patients ({keep.sum():,} images from {patients:,} patients)"


def head_flow(ch, run: BackboneRun, features: dict, augmented, kept) -> None:
    """Fill run's flow: every head of the report's flow (the kept one is `kept`, the saved Result fine tuning starts
    from), each one's validation macro F1, the head it chooses, and that head again on a smaller training set."""
    spec = backbones.spec(run.name)
    for head in spec.heads:
        run.heads[head.section] = (HeadFit(head, kept.history, count_params(kept.model)["total"],
                                           run_files.probabilities(kept.predictions["val"]))
                                   if head == spec.head else fit_head(ch, run.name, head, features, augmented))
    y_val = ch.data.labels("val")
    run.scores = {section: macro_f1(y_val, fit.val_probs.argmax(axis=1)) for section, fit in run.heads.items()}
    run.chosen = choose(run.scores, [spec.kept, *run.heads])  # equals: the report's own choice
    keep, run.smaller_text = smaller_training_set(ch)
    run.smaller = fit_head(ch, run.name, run.heads[run.chosen].head, features, augmented, keep)


def run_backbone(ch, name: str) -> BackboneRun:
    """The report's heads on cached features (the kept one saved), then fine tuning from each chosen layer."""
    base, used = load_backbone(ch, name)
    # the full text (with where to place a missing file) for the log; the page's summary box has the short form
    print(f"{backbones.spec(name).title}: {used.long}", file=sys.stderr)
    ch.record_weights(name, weights_fields(name, used))
    run = BackboneRun(name, used)
    features = backbone_features(ch, name, base, used.long)
    augmented = augmented_features(ch, name, base, used.long)
    kept, augment = backbones.spec(name).head, backbones.fine_tune_augments(name, ch["fine_tune_augment"])
    spec = {"backbone": name, "size": ch["backbone_size"], "weights": used.long,
            "weights_content": weights_digest(ch, name)}
    top = ch.fit(f"{name}_features", lambda: backbones.head(name, features["train"].shape[1:]),
                 head_inputs(ch, kept, features, augmented),
                 {**spec, "stage": "features", "head": kept.section,
                  "augmented copies": ch["augmented_copies"] if kept.augment else 0},
                 learning_rate=ch["feature_learning_rate"])
    run.results[f"{name}_features"] = evaluate_on_images(ch, name, base, top)
    head_flow(ch, run, features, augmented, top)
    for k, layer in enumerate(backbones.fine_tune_points(name, ch["fine_tune"])):
        model_name = f"{name}_finetune_{layer}"
        run.results[model_name] = ch.fit(  # the first starts from the loaded base (only read so far), later ones anew
            model_name, lambda layer=layer, k=k: fine_tune_model(ch, name, top.model, layer, augment,
                                                                 base if k == 0 else None),
            lambda split, shuffle, start=0: ch.dataset(split, ch["backbone_size"], shuffle, start_epoch=start),
            {**spec, "stage": "fine tuning", "from": layer, "augment": augment}, epochs=ch["fine_tune_epochs"],
            learning_rate=ch["fine_tune_learning_rate"], upstream=[top.identity])
    return run


def flow_findings(ch, backbone_runs: dict) -> pd.DataFrame:
    """Each step of the report's flows ('head flow') and "does more data help?" ('more data'), answered on
    validation loss with the paired patient bootstrap; saved as FINDINGS_FILE in the chapter's run folder."""
    val = ch.data.split("val")
    boot = Bootstrap(val["label"], val["Patient ID"], ch["bootstrap"], stream_seed(ch["seed"], BOOTSTRAP_STREAM))
    where = units(boot.images, boot.patient_count, "validation")

    def row(step, question, theirs, before, after):
        found = boot.difference(before, after, "Loss")  # the loss before minus after: above 0 where it fell
        return [step, question, theirs, answer(found, where), found.estimate, found.low, found.high, boot.images,
                boot.patient_count]

    rows = [row("head flow", f"{backbone_runs[name].label}: {question} ({before} to {after})", theirs,
                backbone_runs[name].heads[before].val_probs, backbone_runs[name].heads[after].val_probs)
            for name, before, after, question, theirs in FLOW_QUESTIONS if name in backbone_runs]
    rows += [row("more data", f"{run.label}: more training data lowered validation loss ({run.chosen}, "
                 f"{run.smaller_text} to the whole training set)",
                 MORE_DATA.get(name, "not retrained on the larger set"), run.smaller.val_probs,
                 run.heads[run.chosen].val_probs) for name, run in backbone_runs.items()]
    table = pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
    run_files.write_csv(ch.run.path / FINDINGS_FILE, table)
    return table


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


def fine_tune_model(ch, name: str, trained_head, layer: str, augment: bool = False, base=None):
    """The backbone (base, or a fresh copy) under a trained head's copy, optionally augmented, thawed from layer."""
    base = base if base is not None else load_backbone(ch, name)[0]
    top = keras.models.clone_model(trained_head)
    top.set_weights(trained_head.get_weights())
    model = backbones.full_model(name, base, top, ch["backbone_size"], augment=augment)
    backbones.unfreeze_from(base, layer)
    return model
