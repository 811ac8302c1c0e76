"""What every chapter does first: resolve parameters, load data, open its run folder, show provenance."""
from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field

import pandas as pd

from cxrlib import runs, training
from cxrlib.config import CHAPTER_DEFAULTS, CLASSES, REPO_ROOT, profile_settings
from cxrlib.data import SYNTHETIC_WARNING, ChestData, load_data
from cxrlib.metrics import metrics_row


def project_commit() -> str:
    """The git commit the code ran from, marked dirty when the working tree differs."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def device_text() -> str:
    """CPU or the GPUs TensorFlow sees."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else f"CPU ({platform.processor() or platform.machine()})"


def versions_text() -> str:
    """The library versions that shape the numbers."""
    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    return (f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"NumPy {numpy.__version__}, pandas {pd.__version__}, scikit-learn {sklearn.__version__}")


def resolve_parameters(chapter: str, profile: str, params: dict):
    """Profile and chapter defaults, overridden by every parameter that is not None.

    Returns the settings and the overrides that differ from the defaults (for provenance).
    """
    defaults = {**profile_settings(profile), **CHAPTER_DEFAULTS.get(chapter, {})}
    given = {k.lower(): v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"chapter '{chapter}' has no parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(defaults))}")
    changed = {k: v for k, v in given.items() if v != defaults[k]}
    return {**defaults, **given}, changed


@dataclass
class Result:
    """A trained model with what the book shows about it."""

    name: str
    model: object
    history: pd.DataFrame
    metrics: pd.DataFrame
    predictions: dict = field(default_factory=dict)


class Chapter:
    """A chapter's parameters, data and run folder; trains and evaluates models the same way everywhere."""

    def __init__(self, name: str, profile: str = "cpu", data_dir=None, runs_root=None, **params):
        self.name, self.profile, self.data_dir = name, profile, data_dir
        self.settings, self.changed = resolve_parameters(name, profile, params)
        s = self.settings
        self.data: ChestData = load_data(data_dir, s["seed"], tuple(s["fractions"]), s["caps"],
                                         s["training_set"], s["max_per_class"])
        self.run = runs.ChapterRun(profile, name, runs_root)
        self.weights = self.inherited_weights()
        self.fingerprint = self.data.source.fingerprint()
        self.run.write_info({"chapter": name, "profile": profile, "settings": s, "changed": self.changed,
                             "data": self.data.source.describe(), "data_fingerprint": self.fingerprint,
                             "commit": project_commit()})

    def inherited_weights(self) -> str:
        """What the pretrained chapter used, for chapters that analyse its models."""
        from cxrlib.runner import CHAPTERS, chapter_order

        if self.name not in CHAPTERS or "pretrained" not in chapter_order([self.name])[:-1]:
            return "not used by this chapter"
        info = runs.chapter_infos(self.profile, self.runs_root).get("pretrained", {})
        return f"the pretrained chapter's models used: {info.get('weights', 'unknown (run that chapter)')}"

    def record_weights(self, text: str) -> None:
        """Note the weights a chapter used, in its provenance and its run folder."""
        self.weights = text
        info = runs.chapter_infos(self.profile, self.runs_root).get(self.name, {})
        self.run.write_info({**info, "weights": text})

    def __getitem__(self, key):
        """chapter['epochs'] reads a resolved setting."""
        return self.settings[key]

    def provenance(self) -> str:
        """The chapter's opening line, as Markdown."""
        counts = self.data.table["split"].value_counts()
        split_text = ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
        changed = ", ".join(f"{k}={v!r}" for k, v in self.changed.items()) or "none"
        return (f"**Provenance.** Profile `{self.profile}` · data: {self.data.source.describe()}, "
                f"used {len(self.data.table)} images ({split_text}) · pretrained weights: {self.weights} · "
                f"parameters changed from the defaults: {changed} · {versions_text()} · "
                f"device: {device_text()} · commit `{project_commit()}`")

    def show_provenance(self):
        """Display the provenance line, and a loud banner when the data are synthetic."""
        from IPython.display import HTML, Markdown, display

        if self.data.source.synthetic:
            print("WARNING:", SYNTHETIC_WARNING)
            display(HTML(synthetic_banner()))
        display(Markdown(self.provenance()))

    def dataset(self, split: str, size: int, shuffle=None, preprocess=None):
        """The split as a tf.data pipeline at this chapter's batch size (training split shuffled)."""
        shuffle = split == "train" if shuffle is None else shuffle
        return self.data.dataset(split, size, self["batch_size"], shuffle, self["seed"], preprocess)

    def train_model(self, name: str, builder, *, image_size: int, epochs=None, learning_rate=None,
                    preprocess=None, **build_kwargs) -> Result:
        """Build, train (or reload when already trained with the same spec), evaluate and save one model."""
        spec = {"builder": builder.__name__, "image_size": image_size, "preprocess": preprocess, **build_kwargs}
        return self.fit(name, lambda: builder(image_size=image_size, **build_kwargs),
                        lambda split, shuffle: self.dataset(split, image_size, shuffle, preprocess),
                        spec, epochs, learning_rate)

    def fit(self, name: str, build, inputs, spec: dict, epochs=None, learning_rate=None) -> Result:
        """Train build() on inputs(split, shuffle) unless this exact spec was trained before; then evaluate.

        spec describes the model; the chapter adds the training settings and the data fingerprint.
        """
        import keras

        epochs = epochs or self["epochs"]
        learning_rate = learning_rate or self["learning_rate"]
        spec = json.loads(json.dumps({**spec, "epochs": epochs, "learning_rate": learning_rate,
                                      "patience": self["patience"], "batch_size": self["batch_size"],
                                      "seed": self["seed"], "data": self.fingerprint,
                                      "class_weight": self["class_weight"],
                                      "mixed_precision": self["mixed_precision"]}, default=str))
        work = self.run.file("work", name)
        model_path = self.run.file("models", f"{name}.keras")
        spec_path = work / "spec.json"
        if model_path.is_file() and spec_path.is_file() and json.loads(spec_path.read_text()) == spec:
            print(f"[{name}] already trained with these settings: loading {model_path}")
            model = keras.models.load_model(model_path)
            history = training.read_history(work / "history.csv")
        else:
            keras.utils.set_random_seed(self["seed"])
            training.set_mixed_precision(self["mixed_precision"])
            with training.distribution_scope():
                model, history = training.train(build(), inputs("train", True), inputs("val", False), work,
                                                epochs=epochs, patience=self["patience"],
                                                learning_rate=learning_rate, name=name,
                                                class_weight=training.class_weights(self.data.labels("train"),
                                                                                    self["class_weight"]))
            self.run.save_model(model, name)
            runs.write_json(spec_path, spec)
        self.run.save_history(name, history)
        return self.evaluate(name, model, inputs, history)

    def evaluate(self, name: str, model, inputs, history=None) -> Result:
        """Predict validation and test splits, save both, and the test metrics row."""
        predictions = {}
        for split in ("val", "test"):
            rows = self.data.split(split)
            probs, seconds = training.predict(model, inputs(split, False))
            predictions[split] = runs.predictions_frame(rows["Image Index"], rows["label"], probs)
            self.run.save_predictions(name, split, predictions[split])
        row = metrics_row(name, predictions["test"]["label"], runs.probabilities(predictions["test"]), seconds)
        self.run.save_metrics(name, row)
        return Result(name, model, history if history is not None else pd.DataFrame(), row, predictions)

    @property
    def runs_root(self):
        """The folder holding every profile's run folder."""
        return self.run.profile_dir.parent

    def predictions(self, keys=None, split: str = "test") -> dict:
        """'chapter/model' -> predictions other chapters saved on our data; never retrains, names what to run."""
        return runs.load_predictions(self.profile, split, self.runs_root, self.fingerprint, keys)

    def earlier(self, chapter: str, model: str, split: str = "test") -> pd.DataFrame:
        """One model's predictions from another chapter (checked as predictions() checks them)."""
        return self.predictions([f"{chapter}/{model}"], split)[f"{chapter}/{model}"]

    def images_for(self, ids, size: int) -> dict:
        """Image id -> uint8 image at one size, for any ids of this data source (decoded once, cached)."""
        from cxrlib.data.images import load_images

        ids = list(ids)
        return dict(zip(ids, load_images([self.data.source.paths[i] for i in ids], size)))

    def earlier_model(self, chapter: str, model: str):
        """A model another chapter trained and saved (checked like its predictions)."""
        import keras

        self.earlier(chapter, model)
        return keras.models.load_model(runs.ChapterRun(self.profile, chapter, self.runs_root).file(
            "models", f"{model}.keras"))

    def earlier_metrics(self, chapter: str, model: str) -> pd.DataFrame:
        """Another chapter's metrics row for one model (checked like its predictions)."""
        self.earlier(chapter, model)
        path = runs.ChapterRun(self.profile, chapter, self.runs_root).file("metrics", f"{model}.csv")
        return pd.read_csv(path, index_col=0)


def synthetic_banner() -> str:
    """A red box no reader can miss."""
    return ('<div style="border:3px solid #c00;background:#fee;padding:0.8em;font-weight:bold;color:#900">'
            f"&#9888; {SYNTHETIC_WARNING}</div>")


def open_chapter(name: str, profile: str = "cpu", data_dir=None, show: bool = True, **params) -> Chapter:
    """Start a chapter: resolve parameters, load data, show provenance (unless show=False)."""
    chapter = Chapter(name, profile, data_dir, **params)
    if show:
        chapter.show_provenance()
    return chapter


__all__ = ["CLASSES", "Chapter", "Result", "open_chapter"]
