"""Error analysis (report section 5): which test images every model misses, and what each gets alone."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.core.manifest import REPORT_MODELS
from cxrlib.machinery import runs
from cxrlib.present.labels import metrics_row, model_label
from cxrlib.present.report import ANSWERS
from cxrlib.science.choice import choose, report_candidates, validation_scores
from cxrlib.science.metrics import agreement


def model_choice(profile: str, root=None, load=None) -> pd.DataFrame:
    """One row per report model: the candidate with the best validation macro F1, its score and the others'.

    load(keys, split) -> {key: predictions frame} (a chapter's checked `predictions`); default: the run folder.
    """
    load = load or (lambda keys, split: runs.load_predictions(profile, split, root, keys=keys))
    rows = {}
    for label, keys in report_candidates(runs.prediction_files(profile, "val", root)).items():
        scores = validation_scores(load(keys, "val"))
        best = choose(scores, keys)  # the first of equals: the report's preference
        rows[label] = {"chosen": best, "validation macro F1": scores[best], "candidates (validation macro F1)":
                       ", ".join(f"{k.split('/')[1]} {scores[k]:.4f}" for k in keys)}
    return pd.DataFrame(rows).T.rename_axis("model") if rows else pd.DataFrame(
        columns=["chosen", "validation macro F1", "candidates (validation macro F1)"])


def best_models(profile: str, root=None, load=None) -> dict:
    """label -> 'chapter/model' for each of the report's five models: the best on validation macro F1."""
    return model_choice(profile, root, load)["chosen"].to_dict()


def without_weights(weights: dict) -> set:
    """Backbones a pretrained chapter's weights record (backbone -> fields) says started without pretrained weights."""
    return {name for name, used in (weights or {}).items() if not used["pretrained"]}


def display_label(label: str, key: str, weights: dict) -> str:
    """A model's label as every table, figure and legend shows it: labels.model_label's tag where 'chapter/model'
    was built on a backbone without pretrained weights (an ensemble: any member)."""
    off = without_weights(weights)
    chapter, _, model = key.partition("/")
    tagged = bool(off) if chapter == "ensemble" else chapter == "pretrained" and model.split("_")[0] in off
    return model_label(label, not tagged)


def display_labels(ch, chosen: dict) -> dict:
    """Report label -> display label, for the models chosen (tagged where no pretrained weights were used)."""
    weights = runs.chapter_infos(ch.profile, ch.runs_root).get("pretrained", {}).get("weights") or {}
    return {label: display_label(label, key, weights) for label, key in chosen.items()}


def missing_models_message(chosen: dict) -> str:
    """Which of the report's models are absent, and which chapter would produce them; when none is, the models
    by name and their number (the report's ensemble had six members: two CheXNet fine tunings)."""
    absent = [f"{label} (run: cxr run {REPORT_MODELS[label][0]})" for label in REPORT_MODELS if label not in chosen]
    if absent:
        return "Missing: " + "; ".join(absent)
    return f"All {len(REPORT_MODELS)} models of the report's error analysis are present: {', '.join(REPORT_MODELS)}."


def predicted_classes(predictions: dict) -> pd.Series:
    """Model -> which classes it predicts (labels.predicted_classes: 'all 4', 'only Effusion', ...)."""
    from cxrlib.present.labels import PREDICTED, predicted_classes as words

    return pd.Series({name: words(frame["pred"]) for name, frame in predictions.items()}, name=PREDICTED)


def correctness(predictions: dict) -> pd.DataFrame:
    """Image id x model: True where the model's predicted class is the true one (images all models saw)."""
    frames = [frame.set_index("Image Index") for frame in predictions.values()]
    common = functools.reduce(pd.Index.intersection, (frame.index for frame in frames))
    table = pd.DataFrame({name: frame.loc[common, "pred"] == frame.loc[common, "label"]
                          for name, frame in zip(predictions, frames)})
    table.insert(0, "label", frames[0].loc[common, "label"])
    return table


def summary(correct: pd.DataFrame, boot=None, predictions: dict | None = None):
    """(counts of all-wrong and all-right images, per-model table of what only it misses / gets right); with a
    bootstrap of the test split and the models' predictions, each accuracy carries its 95% interval."""
    hits = correct.drop(columns="label")
    all_wrong, all_right, by_model = agreement(hits)
    totals = pd.Series({"misclassified by all the models": all_wrong,
                        "correctly classified by all the models": all_right, "images": len(hits)}, name="images")
    only = pd.DataFrame.from_dict(by_model, orient="index", columns=[
        "misclassified only by this model", "correctly classified only by this model", "accuracy"]).rename_axis("model")
    if boot is not None:
        from cxrlib.present.claims import range_text

        only["accuracy"] = [range_text(boot.interval(runs.probabilities(predictions[m]), "Accuracy")) for m in hits]
    return totals.to_frame(), only


def pick(correct: pd.DataFrame, all_wrong: bool, per_class: int = 4) -> pd.DataFrame:
    """Up to per_class images of each class that every model misses (or every model gets right)."""
    hits = correct.drop(columns="label")
    chosen = correct[(~hits).all(axis=1) if all_wrong else hits.all(axis=1)]
    return pd.concat([chosen[chosen["label"] == k].head(per_class) for k in range(len(CLASSES))])


def image_model(ch, key: str):
    """The saved model of 'chapter/model' that takes images (a features head joined to its backbone), checked like
    its predictions, for Grad-CAM."""
    from cxrlib.machinery.predict import image_model as saved_image_model

    chapter, name = key.split("/", 1)
    ch.earlier(chapter, name)
    return saved_image_model(runs.ChapterRun(ch.profile, chapter, ch.runs_root).live, key, name)


def chosen_models(ch, chosen: dict) -> dict:
    """Display label (tagged where no pretrained weights were used) -> the chosen model, taking images."""
    labels = display_labels(ch, chosen)
    return {labels[label]: image_model(ch, key) for label, key in chosen.items()}


def resizer_outputs(ch, chapter: str, model_name: str, count: int = 6):
    """(bilinear, learnt) resizes of the first training images by a trained model's resizer, as gray
    arrays on the input's scale (no per-image stretching, so the two can be compared)."""
    import tensorflow as tf

    model = ch.earlier_model(chapter, model_name)
    resizer = model.get_layer("learnable_resizer")
    size = resizer.output.shape[1]
    gray = np.asarray(ch.data.images("train", model.input.shape[1])[:count], np.float32) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    bilinear = tf.image.resize(rgb, (size, size)).numpy().mean(axis=-1)
    learnt = np.asarray(resizer(rgb, training=False)).mean(axis=-1)
    return list(bilinear), list(learnt)


@dataclass
class Chosen:
    """The report's models, each chosen on validation macro F1, with the labels every table and figure shows."""

    choice: pd.DataFrame  # one row per report model, indexed by its display label
    keys: dict  # report label -> 'chapter/model'
    labels: dict  # report label -> display label (tagged where no pretrained weights were used)
    missing: str  # which of the report's models are absent, in a sentence

    def by_label(self, frames: dict) -> dict:
        """Display label -> frame, from 'chapter/model' -> frame."""
        return {self.labels[label]: frames[key] for label, key in self.keys.items()}


def choose_report_models(ch) -> Chosen:
    """The one call of every chapter that analyses the report's models: choose each on validation, label it."""
    choice = model_choice(ch.profile, ch.runs_root, ch.predictions)
    keys = choice["chosen"].to_dict()
    labels = display_labels(ch, keys)
    return Chosen(choice.rename(index=labels), keys, labels, missing_models_message(keys))


def boxes_to_score(boxes: pd.DataFrame, test_ids, all_ids) -> tuple:
    """(NIH boxes of the four classes to score, where they come from in words): the test images' boxes, else,
    where the test split holds none, those of any split, said plainly since training images flatter a model."""
    ours = boxes[boxes["Finding Label"].isin(CLASSES)]
    boxed = ours[ours["Image Index"].isin(test_ids)]
    if not boxed.empty:
        return boxed, "test images"
    return (ours[ours["Image Index"].isin(all_ids)],
            "images of any split (the test split has no boxed image; training images flatter the models)")


@dataclass
class Ensembles:
    """What the ensemble chapter computes: the weights fitted on validation, each ensemble's saved predictions and
    test metrics, and each member's temperature."""

    def shown(self) -> list:
        """(saved key, test predictions, metrics row) of each ensemble, as Chapter.show_results takes them."""
        return [(key, self.frames[key]["test"], self.results.loc[[name]]) for name, key in self.names.items()]

    def val_scores(self) -> pd.Series:
        """Display name -> validation macro F1 of each ensemble (out of fold for the fitted ones)."""
        return validation_scores({name: self.frames[key]["val"] for name, key in self.names.items()})

    fitted: object  # science.ensemble.ValidationFit
    names: dict  # display name -> saved key
    results: pd.DataFrame  # test metrics, one row per ensemble
    frames: dict  # saved key -> split -> predictions frame
    temperatures: dict  # 'chapter/model' -> TemperatureFit


def ensembles_of(ch, chosen: Chosen, val: dict, test: dict) -> Ensembles:
    """Fit the ensembles on the members' validation predictions only, save their predictions and metrics, and
    keep each member's temperature for `cxr predict`; val and test: member display label -> predictions."""
    from cxrlib.present.labels import ENSEMBLE_NAMES as NAMES

    members_pretrained = all(shown == label for label, shown in chosen.labels.items())
    names = {model_label(NAMES[key], members_pretrained): key for key in NAMES}  # tagged like their members
    fitted = fit_ensembles(ch, val, candidate_logits(ch, chosen))
    results, frames = save_ensembles(ch, fitted, val, test, names)
    return Ensembles(fitted, names, results, frames, save_temperatures(ch, chosen.keys, val))


def candidate_logits(ch, chosen: Chosen) -> dict:
    """Member label -> {'chapter/model': validation logits} of every candidate the member was chosen from."""
    pool = report_candidates(runs.prediction_files(ch.profile, "val", ch.runs_root))
    frames = ch.predictions([key for keys in pool.values() for key in keys], "val")
    return {chosen.labels[label]: {key: runs.logits(frames[key]) for key in keys} for label, keys in pool.items()}


def fit_ensembles(ch, val: dict, candidates: dict | None = None):
    """The ensemble weights (science.ensemble.fit_on_validation) with the chapter's GA settings, on validation
    only; val: member label -> validation predictions (with logits)."""
    from cxrlib.science import ensemble

    first = next(iter(val.values()))
    patients = patients_of(ch, first["Image Index"])
    options = {name: ch[f"ga_{name}"] for name in ("population", "generations", "crossover", "mutation",
                                                    "crossover_genes", "tournament", "elitism")}
    return ensemble.fit_on_validation({label: runs.logits(frame) for label, frame in val.items()}, first["label"],
                                      patients, candidates=candidates, seed=ch["seed"], restarts=ch["ga_restarts"],
                                      **options)


def save_ensembles(ch, fitted, val: dict, test: dict, names: dict) -> tuple:
    """Each fitted ensemble's predictions (validation out of fold, and test) and test metrics, saved in the
    chapter's run folder; names: display name -> saved key. Returns (metrics table, key -> split -> frame)."""
    from cxrlib.science import ensemble

    val_rows, test_rows = (next(iter(split.values()))[["Image Index", "label"]] for split in (val, test))
    test_logits = {label: runs.logits(frame) for label, frame in test.items()}
    frames = ensemble.prediction_frames(fitted, test_logits, val_rows, test_rows)
    rows = []
    for name, key in names.items():
        for split in ("val", "test"):
            ch.run.save_predictions(key, split, frames[key][split])
        rows.append(metrics_row(name, test_rows["label"], runs.probabilities(frames[key]["test"])))
        ch.run.save_metrics(key, rows[-1])
    return pd.concat(rows), frames


def save_temperatures(ch, keys: dict, val: dict) -> dict:
    """Each member's temperature, fitted on its validation logits, kept for `cxr predict` ('chapter/model' -> T)."""
    from cxrlib.science.calibration import fit_temperatures

    temperatures = fit_temperatures({key: runs.logits(frame) for key, frame in zip(keys.values(), val.values())},
                                    next(iter(val.values()))["label"])
    ch.run.save_temperatures(temperatures)
    return temperatures


def patients_of(ch, ids) -> pd.Series:
    """The patient of each image id, in the ids' order (for patient-clustered resampling)."""
    return ch.data.table.set_index("Image Index").loc[list(ids), "Patient ID"]


def read_boxes(path) -> pd.DataFrame:
    """NIH's BBox_List_2017.csv with plain column names and 'Infiltrate' renamed to our 'Infiltration'."""
    table = pd.read_csv(path).iloc[:, :6].set_axis(["Image Index", "Finding Label", "x", "y", "w", "h"], axis=1)
    return table.replace({"Finding Label": {"Infiltrate": "Infiltration"}})


def nih_boxes():
    """NIH's radiologist boxes (BBox_List_2017.csv, shipped in data/nih-metadata), or None where the file is absent."""
    from cxrlib.machinery.inputs.sources import nih_metadata_dir

    path = nih_metadata_dir() / "BBox_List_2017.csv"
    return read_boxes(path) if path.is_file() else None


def gradcam_examples(correct: pd.DataFrame) -> dict:
    """Finding -> the test image of that class that most models get right: one example per finding for the grid."""
    hits = correct.drop(columns="label").sum(axis=1)
    return {CLASSES[k]: hits[correct["label"] == k].idxmax() for k in range(1, len(CLASSES))
            if (correct["label"] == k).any()}


def predicted_by_image(predictions: dict) -> dict:
    """Model label -> {image id: the class it predicted}, for the captions that say what each model said."""
    return {label: frame.set_index("Image Index")["pred"].to_dict() for label, frame in predictions.items()}


# Chapters whose saved models are baselines, not ours: they never compete for "our best".
BASELINE_CHAPTERS = ("baseline",)


def recorded_limits(infos: dict) -> list:
    """Every limiting factor (labels.limiting_factors) that any chapter's chapter.json records, in first-seen order."""
    from cxrlib.present.labels import limiting_factors

    factors = (factor for info in infos.values() for factor in
               limiting_factors(info.get("settings", {}), info.get("source"), info.get("weights") or None))
    return list(dict.fromkeys(factors))


@dataclass
class Gathered:
    """Everything the conclusions read from the run folder, keyed by the label each model shows."""

    test: dict  # label -> test probabilities, our models
    val_scores: pd.Series  # label -> validation macro F1, our models that saved validation predictions
    families: dict  # label -> its chapter's family, for every model with a validation score
    ensembles: list  # labels of the ensembles
    members: list  # labels of the report's five models as chosen on validation (the ensembles' members)
    baselines: dict  # name -> test probabilities: the trivial baselines, and any saved by a baseline chapter
    extra: pd.DataFrame  # label -> loss, inference time, classes predicted
    keys: dict  # label -> 'chapter/model'
    limits: list  # what limited the build, as the run folder records it
    held_out: pd.DataFrame | None = None  # the labels-only baseline on held-out NIH patients (its chapter's table)


def gathered(ch) -> Gathered:
    """Read every chapter's saved predictions and metrics once, and label them as the pages show them."""
    from cxrlib.core.manifest import REGISTRY
    from cxrlib.present.labels import BESIDE_METRICS

    frames, metrics = ch.predictions(None, "test"), ch.metrics()
    ours = [key for key in frames if key.split("/")[0] not in BASELINE_CHAPTERS]
    labels = display_labels(ch, {key: key for key in ours})
    val = ch.predictions([k for k in runs.prediction_files(ch.profile, "val", ch.runs_root) if k in ours], "val")
    scores = validation_scores(val).rename(index=labels)
    families = {labels[k]: REGISTRY[k.split("/")[0]].family or k.split("/")[0] for k in ours if labels[k] in scores}
    chosen = [labels[key] for key in best_models(ch.profile, ch.runs_root, ch.predictions).values()]
    baselines = {**ch.baselines(), **{baseline_label(key): runs.probabilities(f) for key, f in frames.items()
                                      if key not in ours}}
    return Gathered({labels[k]: runs.probabilities(frames[k]) for k in ours}, scores, families,
                    [labels[k] for k in ours if k.startswith("ensemble/")], chosen, baselines,
                    loss_after_balancing(ch, metrics.loc[ours, BESIDE_METRICS]).rename(index=labels),
                    {labels[k]: k for k in ours}, recorded_limits(runs.chapter_infos(ch.profile, ch.runs_root)),
                    held_out(ch))


def baseline_label(key: str) -> str:
    """The name a saved baseline shows ('baseline/labels_only' -> the words of present.labels)."""
    from cxrlib.machinery.baseline import NAME
    from cxrlib.present.labels import LABELS_ONLY

    return LABELS_ONLY if key == f"baseline/{NAME}" else key


def held_out(ch) -> pd.DataFrame | None:
    """The labels-only baseline's intervals on held-out NIH patients, as its chapter saved them (None: not run)."""
    from cxrlib.machinery.baseline import HELD_OUT_FILE

    path = runs.ChapterRun(ch.profile, "baseline", ch.runs_root).live_file("tables", HELD_OUT_FILE)
    return pd.read_csv(path) if path.is_file() else None


def loss_after_balancing(ch, table: pd.DataFrame) -> pd.DataFrame:
    """The table with its Loss column named for what it measures where predictions were balanced."""
    from cxrlib.present.labels import AFTER_BALANCING

    return table.rename(columns={"Loss": f"Loss ({AFTER_BALANCING})"}) if ch["balance_predictions"] else table


def question_rows(ch, boot) -> list:
    """Every report question of every chapter (manifest.QUESTIONS) answered on this chapter's test split."""
    from cxrlib.present.claims import question_rows as rows
    from cxrlib.core.manifest import QUESTIONS

    files = runs.prediction_files(ch.profile, "test", ch.runs_root)
    found = []
    for chapter, questions in QUESTIONS.items():
        keyed = [(q, *(k if "/" in k else f"{chapter}/{k}" for k in (a, b)), ra, rb) for q, a, b, ra, rb in questions]
        ready = [q for q in keyed if q[1] in files and q[2] in files]
        frames = ch.predictions(sorted({k for q in ready for k in q[1:3]}), "test")
        found += rows(boot, [(q, runs.probabilities(frames[a]), runs.probabilities(frames[b]), ra, rb)
                             for q, a, b, ra, rb in ready])
    return found


def family_table(ch, boot, found: Gathered) -> pd.DataFrame:
    """Each family's best on validation against ours (present.conclusions), kept in the run folder for the site."""
    from cxrlib.present.conclusions import family_table as table
    from cxrlib.core.manifest import counterpart

    report = {label: counterpart(*key.split("/", 1)) for label, key in found.keys.items()}
    families = table(boot, found.test, found.val_scores, found.families, report, found.baselines)
    runs.write_csv(ch.run.file("tables", FAMILIES_FILE), families, index=True)
    return families


FAMILIES_FILE = "families.csv"


def flow_findings(ch) -> pd.DataFrame | None:
    """The pretrained chapter's answers to the report's flows and to "does more data help?" (on validation), as
    that chapter saved them; None where it has not run."""
    from cxrlib.machinery.transfer import FINDINGS_FILE

    path = runs.ChapterRun(ch.profile, "pretrained", ch.runs_root).live / FINDINGS_FILE
    return pd.read_csv(path).set_index("question")[ANSWERS] if path.is_file() else None
