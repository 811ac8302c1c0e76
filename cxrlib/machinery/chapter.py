"""What every chapter does first: resolve parameters, load data, open its run folder, show provenance."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pandas as pd

from cxrlib.core.config import CLASSES, notebooks_dir
from cxrlib.core.manifest import CHAPTERS, PARAMETERS, REGISTRY, chapter_order, resolve_parameters
from cxrlib.machinery import identity, runs
from cxrlib.machinery.inputs import SYNTHETIC_WARNING, ChestData, load_for, nih_label_file, read_metadata
from cxrlib.machinery.provenance import device_text, project_commit, versions_text
from cxrlib.machinery.repro import changed_in_words, changed_text, lock_text, rebuild_command, run_parameters
from cxrlib.machinery.site import library_logs_to_stderr
from cxrlib.present import page
from cxrlib.present.labels import metrics_row
from cxrlib.science.data.pipeline import make_dataset


@dataclass
class Result:
    """A trained model with what the book shows about it."""

    name: str
    model: object
    history: pd.DataFrame
    metrics: pd.DataFrame
    predictions: dict = field(default_factory=dict)
    identity: str = ""


# Chapters that read saved predictions and metrics only: they never import TensorFlow, and start seconds sooner.
WITHOUT_TENSORFLOW = ("dataset", "baseline", "ensemble", "subgroups", "conclusions")


class Chapter:
    """A chapter's parameters, data and run folder; trains and evaluates models the same way everywhere."""

    def __init__(self, name: str, profile: str = "cpu", data_dir=None, runs_root=None, readonly: bool = False,
                 **params):
        self.name, self.profile, self.data_dir, self.readonly = name, profile, data_dir, readonly
        self.settings, self.changed = resolve_parameters(name, profile, params)
        s = self.settings
        self.data: ChestData = load_for(data_dir, s)
        self.run = runs.ChapterRun(profile, name, runs_root, staged=not readonly)  # read-only: the results in place
        handed = handed_identity(name)  # the runner's, data identity included: computed once per run, not again here
        self.data_id = handed[1]["data"] if handed else identity.data_identity(self.data, s)
        self.identity, self.parts = handed or self.chapter_identity()
        self.reads = self.upstream_reads()
        self.weights = self.inherited_weights()
        self.trained: dict = {}  # name -> Result of each model this chapter trained or reloaded, in order
        if name not in WITHOUT_TENSORFLOW:
            self.training()  # deterministic ops before the first model is built or read
        if not readonly:
            self.run.write_info({"chapter": name, "profile": profile, "identity": self.identity,
                                 "identity_parts": self.parts, "reads": self.reads,
                                 "settings": s, "changed": self.changed, "data": self.data.source.describe(),
                                 "source": {"kind": self.data.source.kind, "images": len(self.data.source.table)},
                                 "data_identity": self.data_id, "commit": project_commit(), "weights": self.weights})

    def training(self):
        """cxrlib.science.training with deterministic ops, imported here so analysis chapters skip TensorFlow."""
        from cxrlib.science import training

        training.set_determinism(self.settings.get("deterministic", True))
        return training

    def chapter_identity(self) -> tuple:
        """(identity, its parts) of this chapter's output, as the runner computes it, from the results in place."""
        infos, path = runs.chapter_infos(self.profile, self.runs_root), notebooks_dir() / f"{self.name}.ipynb"
        notebook = identity.notebook_digest(path.read_bytes() if path.is_file() else b"")
        upstream = {c: infos.get(c, {}).get("identity") for c in CHAPTERS.get(self.name, ())}
        parts = identity.chapter_parts(self.name, notebook, self.settings, self.data_id, upstream)
        return identity.chapter_identity(parts), parts

    def upstream_reads(self) -> dict:
        """Every chapter this one reads, directly or not, in run order -> its identity and changed parameters."""
        infos, reads = runs.chapter_infos(self.profile, self.runs_root), {}
        for chapter in CHAPTERS.get(self.name, ()):
            reads.update(infos.get(chapter, {}).get("reads", {}))
            reads[chapter] = {k: infos.get(chapter, {}).get(k) for k in ("identity", "changed")}
        return {c: reads[c] for c in chapter_order([self.name]) if c in reads}

    def chain(self) -> dict:
        """chapter -> the parameters it ran with, for every result this page reads and its own."""
        return {**{c: read["changed"] or {} for c, read in self.reads.items()}, self.name: self.changed}

    @property
    def weights_inherited(self) -> bool:
        """Whether this chapter analyses the pretrained chapter's models (so it reports that chapter's weights)."""
        return self.name in CHAPTERS and "pretrained" in chapter_order([self.name])[:-1]

    def inherited_weights(self) -> dict:
        """The weights record (backbone -> fields) this chapter starts from: planned, inherited or empty."""
        if self.name == "pretrained":
            from cxrlib.machinery.transfer import planned_weights

            return planned_weights(self)
        if not self.weights_inherited:
            return {}
        return runs.chapter_infos(self.profile, self.runs_root).get("pretrained", {}).get("weights") or {}

    def record_weights(self, backbone: str, fields: dict) -> None:
        """Note the weights one backbone started from, in the provenance and the run folder (as fields)."""
        self.weights = {**self.weights, backbone: fields}
        self.run.write_info({**self.run.read_info(), "weights": self.weights})

    def finish(self) -> None:
        """The chapter's last cell: move its staged results into place (the runner does it when it runs us)."""
        if self.live and self.readonly:
            print(f"chapter '{self.name}' ran read-only: nothing was written to {self.run.live}")
        elif self.live:
            self.run.promote()
            print(f"results of chapter '{self.name}' are in place: {self.run.live}")

    @property
    def live(self) -> bool:
        """True in a live front end (Jupyter, Voila); False when `cxr run` executes the notebook."""
        return live_front_end()

    def __getitem__(self, key):
        """chapter['epochs'] reads a resolved setting."""
        return self.settings[key]

    def command(self) -> str:
        """The exact command that rebuilds this page: commit, data folder and every read result's parameters."""
        return rebuild_command(self.name, self.profile, run_parameters(self.chain()), self.data_dir, project_commit())

    def counts_text(self) -> str:
        """How many images and patients each split used, in words."""
        return page.counts_text(self.data.table)

    def nih_labels(self) -> pd.DataFrame | None:
        """NIH's full label file (None where not found: set CXR_NIH_METADATA), counted beside the report's."""
        path = nih_label_file()
        return read_metadata(path) if path else None

    def bootstrap(self, split: str = "test"):
        """One set of patient resamples of a split, shared by every interval and difference this page shows."""
        from cxrlib.science.stats import Bootstrap

        boots = self.__dict__.setdefault("_boots", {})
        if split not in boots:
            rows = self.data.split(split)
            boots[split] = Bootstrap(rows["label"], rows["Patient ID"], self["bootstrap"], self["seed"])
        return boots[split]

    def baselines(self, split: str = "test") -> dict:
        """The trivial baselines' probabilities on a split (name -> array): what every result must beat."""
        from cxrlib.science.baseline import trivial_baselines

        return trivial_baselines(self.data.labels("train"), len(self.data.split(split)), self["seed"])

    def shown(self, item) -> tuple:
        """(key, test predictions, metrics row) of a Result here or a "chapter/model" of another (or that triple);
        key as the manifest's models and QUESTIONS name it."""
        if isinstance(item, tuple):
            return item
        if isinstance(item, str):
            chapter, model = item.split("/", 1)
            return item, self.earlier(chapter, model), self.earlier_metrics(chapter, model)
        return item.name, item.predictions["test"], item.metrics

    def manifest_models(self) -> list:
        """The manifest's models of this chapter in order: Results trained here, "chapter/model" keys of others."""
        missing = [key for key in REGISTRY[self.name].models if "/" not in key and key not in self.trained]
        if missing:
            raise KeyError(f"chapter {self.name!r} shows {', '.join(missing)} by default: train them first, or name "
                           f"the models to show")
        return [self.trained.get(key, key) for key in REGISTRY[self.name].models]

    def show_results(self, items=None, labels: dict | None = None) -> None:
        """The page's test results (present.page.show_results) of items (default: manifest_models); labels: key ->
        the name shown."""
        from cxrlib.machinery.analysis import loss_after_balancing
        from cxrlib.core.manifest import counterpart
        from cxrlib.present.labels import BESIDE_METRICS

        found = [self.shown(item) for item in (self.manifest_models() if items is None else items)]
        labels = {key: (labels or {}).get(key, key) for key, _, _ in found}
        probs = {labels[key]: runs.probabilities(frame) for key, frame, _ in found}
        report = {labels[key]: counterpart(self.name, key) for key, _, _ in found}
        extra = loss_after_balancing(self, pd.concat([row.set_axis([labels[key]]) for key, _, row in found])[
            BESIDE_METRICS])
        page.show_results(self.bootstrap(), probs, report, self.baselines(), extra)

    def show_summary(self, items=None, labels: dict | None = None) -> None:
        """The closing summary: the best of items (default: manifest_models) on validation, its test interval and
        the report's questions."""
        from cxrlib.science.choice import validation_scores

        items = self.manifest_models() if items is None else items
        own = {item.name: item for item in items if not isinstance(item, (str, tuple))}
        found = {key: frame for key, frame, _ in map(self.shown, items)}
        val = {key: own[key].predictions["val"] if key in own else self.earlier(*key.split("/", 1), split="val")
               for key in found}
        labels = {key: (labels or {}).get(key, key) for key in found}
        probs = {labels[key]: runs.probabilities(frame) for key, frame in found.items()}
        scores = validation_scores({labels[key]: frame for key, frame in val.items()})
        page.show_summary(self.bootstrap(), probs, scores, self.baselines(), self.question_rows(own.values()))

    def question_rows(self, items=()) -> list:
        """This chapter's report questions (manifest.QUESTIONS) answered on test macro F1 (present.claims); items:
        this chapter's Results they name (others are read as "chapter/model")."""
        from cxrlib.present import claims
        from cxrlib.core.manifest import QUESTIONS

        own = {r.name: r for r in items}

        def probs(key):
            return runs.probabilities(self.shown(own.get(key, key))[1])

        return claims.question_rows(self.bootstrap(), [(q, probs(a), probs(b), ra, rb)
                                                       for q, a, b, ra, rb in QUESTIONS.get(self.name, ())])

    def show_questions(self, items=(), rows=None) -> None:
        """The table of report questions (default: question_rows), and what chance alone answers among them."""
        page.show_questions(self.question_rows(items) if rows is None else rows)

    def summary_html(self) -> str:
        """The boxed summary under the title: what the numbers are worth, then the full provenance collapsed."""
        from cxrlib.present.labels import patient_share_sentence, summary_box, weights_text
        from cxrlib.science.data.splits import patients_over_share

        over = not patients_over_share(self.data.table, self["max_patient_share"]).empty
        changed, counts = changed_in_words(self.chain(), self.name), self.counts_text()
        provenance = page.provenance_text(self.profile, self.data.source.describe(), counts, changed_text(changed),
                                          versions_text(), lock_text(), self.identity, device_text(), project_commit())
        box = summary_box(profile=self.profile, settings=self.settings, data=self.data.source.describe(),
                          chapter=self.name, counts=counts, weights=weights_text(self.weights, self.weights_inherited),
                          changed=changed, commit=project_commit(), provenance=provenance, command=self.command(),
                          warning=patient_share_sentence(self.data.table, self["max_patient_share"]) if over else "")
        return page.with_banner(box, self.data.source.synthetic)

    def show_provenance(self):
        """Display the summary box (with a loud banner inside it when the data are synthetic)."""
        from IPython.display import HTML, display

        from cxrlib.present.tables import use_book_tables
        from cxrlib.present.plots import use_book_style

        use_book_style()  # one figure style and one table style for every chapter
        use_book_tables()
        library_logs_to_stderr()  # TensorFlow's warnings go to the chapter's log, not its page
        display(HTML(self.summary_html()))
        if self.data.source.synthetic:
            print("WARNING:", SYNTHETIC_WARNING)

    def dataset(self, split: str, size: int, shuffle=None, preprocess=None, start_epoch: int = 0):
        """The split as a tf.data pipeline; shuffled (train by default) it is endless and epoch-aware from
        start_epoch, so a resumed fit sees the batches an uninterrupted one would have."""
        shuffle = split == "train" if shuffle is None else shuffle
        return make_dataset(self.data.images(split, size, preprocess), self.data.labels(split), self["batch_size"],
                            shuffle, self["seed"], start_epoch=start_epoch)

    def train_model(self, name: str, builder, *, image_size: int, epochs=None, learning_rate=None,
                    preprocess=None, **build_kwargs) -> Result:
        """Build, train (or reload when already trained with the same identity), evaluate and save one model."""
        spec = {"builder": builder.__name__, "image_size": image_size, "preprocess": preprocess, **build_kwargs}
        return self.fit(name, lambda: builder(image_size=image_size, **build_kwargs),
                        lambda split, shuffle, start=0: self.dataset(split, image_size, shuffle, preprocess, start),
                        spec, epochs, learning_rate)

    def fit(self, name: str, build, inputs, spec: dict, epochs=None, learning_rate=None, upstream=()) -> Result:
        """Train build() on inputs(split, shuffle, start_epoch) unless this exact identity (identity.result_identity
        of spec and the upstream results it starts from) was trained; evaluate."""
        settings = {**self.settings, "epochs": epochs or self["epochs"],
                    "learning_rate": learning_rate or self["learning_rate"]}
        spec = json.loads(json.dumps(spec, default=str))
        made = identity.result_identity(spec, settings, self.data_id, self.parts["notebook"], upstream)
        record = {"identity": made, "spec": spec, "upstream": list(upstream),
                  "training": {k: settings.get(k) for k in identity.TRAINING_SETTINGS}}
        model = self._reuse(name, made)
        if model is None:
            model, history = self._train(name, build, inputs, settings, made)
            self.run.save_model(model, name)
            self.run.save_history(name, history)
        else:
            history = self.training().read_history(self.run.file("histories", f"{name}.csv"))
        record["did_not_learn"] = self.training().did_not_learn(history)  # pages read it: a model stopped at chance
        runs.write_json(self.run.file("models", f"{name}.json"), record)
        result = self.evaluate(name, model, inputs, history)
        result.identity = made
        self.trained[name] = result
        return result

    def _reuse(self, name: str, made: str):
        """The model of exactly this identity, in place or kept, carried into this run; else None."""
        from cxrlib.science.models import load

        folder = self.run.holding(name, made)
        if folder is None:
            return None
        print(f"[{name}] already trained with exactly these settings, data and code: reusing it")
        self.run.keep("models", f"{name}.keras", folder)
        if (folder / "histories" / f"{name}.csv").is_file():
            self.run.keep("histories", f"{name}.csv", folder)
        return load(self.run.file("models", f"{name}.keras"))

    def _train(self, name: str, build, inputs, settings: dict, made: str):
        """Seeded, resumable training in the work folder (which outlives a failed run)."""
        import keras

        from cxrlib.science.data.pipeline import steps_per_epoch

        keras.utils.set_random_seed(self["seed"])
        training = self.training()
        training.set_mixed_precision(self["mixed_precision"])
        steps = steps_per_epoch(len(self.data.split("train")), self["batch_size"])
        with training.distribution_scope():
            model, history = training.train(
                build(), lambda start: (inputs("train", True, start), steps), inputs("val", False),
                self.run.file("work", name), epochs=settings["epochs"], patience=self["patience"],
                learning_rate=settings["learning_rate"], name=name, identity=made,
                class_weight=training.class_weights(self.data.labels("train"), self["class_weight"]),
                run_eagerly=self["run_eagerly"])
        if self["balance_predictions"]:
            offsets = training.balance(model, inputs("val", False), self.data.labels("val"), self["class_weight"])
            print(f"[{name}] predictions balanced on validation: logit offsets "
                  f"{[round(float(x), 3) for x in offsets]}")
        return model, history

    def evaluate(self, name: str, model, inputs, history=None) -> Result:
        """Predict validation and test splits, save both, and the test metrics row."""
        predictions = {}
        model.run_eagerly = self["run_eagerly"]  # as in training: a handful of batches is not worth a graph
        for split in ("val", "test"):
            rows = self.data.split(split)
            probs, logits, seconds = self.training().predict_with_logits(model, inputs(split, False))
            predictions[split] = runs.predictions_frame(rows["Image Index"], rows["label"], probs, logits)
            self.run.save_predictions(name, split, predictions[split])
        row = metrics_row(name, predictions["test"]["label"], runs.probabilities(predictions["test"]), seconds)
        self.run.save_metrics(name, row)
        return Result(name, model, history if history is not None else pd.DataFrame(), row, predictions)

    @property
    def runs_root(self):
        """The folder holding every profile's run folder."""
        return self.run.profile_dir.parent

    def predictions(self, keys=None, split: str = "test") -> dict:
        """'chapter/model' -> predictions other chapters saved on our data, checked row for row against our split."""
        return runs.load_predictions(self.profile, split, self.runs_root, self.data_id, keys,
                                     rows=self.data.split(split), reader=self.name)

    def metrics(self) -> pd.DataFrame:
        """Every metrics row other chapters saved under this profile, refused if made on other data."""
        return runs.load_metrics(self.profile, self.runs_root, self.data_id, reader=self.name)

    def earlier(self, chapter: str, model: str, split: str = "test") -> pd.DataFrame:
        """One model's predictions from another chapter (checked as predictions() checks them)."""
        return self.predictions([f"{chapter}/{model}"], split)[f"{chapter}/{model}"]

    def images_for(self, ids, size: int) -> dict:
        """Image id -> uint8 image at one size, for any ids of this data source (decoded once, cached)."""
        ids = list(ids)
        return dict(zip(ids, self.data.images_of(ids, size)))

    def earlier_model(self, chapter: str, model: str):
        """A model another chapter trained and saved (checked like its predictions)."""
        from cxrlib.science.models import load

        self.earlier(chapter, model)
        return load(runs.ChapterRun(self.profile, chapter, self.runs_root).live_file("models", f"{model}.keras"))

    def earlier_metrics(self, chapter: str, model: str) -> pd.DataFrame:
        """Another chapter's metrics row for one model (checked like its predictions)."""
        self.earlier(chapter, model)
        path = runs.ChapterRun(self.profile, chapter, self.runs_root).live_file("metrics", f"{model}.csv")
        return pd.read_csv(path, index_col=0)


def handed_identity(name: str) -> tuple | None:
    """(identity, parts) the runner computed for this chapter and handed to its kernel (None when run by hand)."""
    try:
        handed = json.loads(os.environ.get(runs.RUNNER_ENV) or "{}")
    except json.JSONDecodeError:
        return None
    return (handed["identity"], handed["parts"]) if isinstance(handed, dict) and handed.get("chapter") == name else None


def live_front_end() -> bool:
    """Whether a person's front end runs this kernel, i.e. `cxr run` (papermill) does not."""
    return not os.environ.get(runs.RUNNER_ENV)


def open_chapter(name: str, namespace=None, show: bool = True, viewer: bool = False, **params) -> Chapter:
    """Start a chapter from its notebook's globals(): PROFILE, DATA_DIR and the table's parameters (None: the
    profile's value), overridden by keyword arguments. viewer=True (a chapter that only reads others' results)
    opens read-only in a live front end, writing nothing; under `cxr run` it publishes as any chapter does."""
    namespace = dict(namespace or {})
    given = {**{k.lower(): v for k, v in namespace.items() if k.isupper() and k.lower() in PARAMETERS},
             **{k.lower(): v for k, v in params.items()}}
    profile = given.pop("profile", None) or namespace.get("PROFILE") or "cpu"
    data_dir = given.pop("data_dir", None) or namespace.get("DATA_DIR")
    chapter = Chapter(name, profile, data_dir, readonly=viewer and live_front_end(), **given)
    if show:
        chapter.show_provenance()
    return chapter


__all__ = ["CLASSES", "Chapter", "Result", "open_chapter"]
