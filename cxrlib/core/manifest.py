"""The book's manifest: every chapter, what it reads, the parameters it takes (each a JSON schema, one line of help
and a default per profile), its models and the report's rows they reproduce, and the report's questions that pair
two of them. The one place these are stated; the notebooks' parameters cells (`make cells`), `cxr list`, the
runner's checks of `-p` values and the pages' report pairings all come from here. Nothing here imports the library.

To add a chapter: write notebooks/<name>.ipynb, give it an entry in REGISTRY (in the book's order: what it reads,
the parameters it takes beyond EVERY, its models' report rows), add any new parameter to PARAMETERS with the
report's default (and to SAMPLE or a profile where they differ), then run `make cells`.
"""
from __future__ import annotations

import difflib
import functools
import graphlib
import math
from dataclasses import dataclass, field

from cxrlib.core import backbones
from cxrlib.core.config import CLASSES, REPORT_COUNTS

# Allowed choices, stated once: the code that acts on a choice imports it from here.
SPLITS = ("train", "val", "test")
BACKBONES = tuple(backbones.BACKBONES)  # the report's backbones, by name
CLASS_WEIGHTS = ("none", "balanced")
FINE_TUNE = ("none", "first", "all")
FINE_TUNE_AUGMENT = ("report", "always", "never")
ON_BAD_IMAGE = ("fail", "skip")
TRAINING_SETS = ("first", "more")


class RunnerError(RuntimeError):
    """A problem the user can fix: unknown chapter or parameter, failed chapter, missing pages."""


class ParameterError(ValueError):
    """A parameter name or value the manifest does not allow."""


@dataclass(frozen=True)
class Param:
    """One parameter: a JSON schema of its allowed values (with a description where the schema is long to read), its
    default in the report's settings (the full profile; the others change some: PROFILES) and a line of help."""

    schema: dict
    default: object
    help: str


def whole(low: int, high: int, null: bool = False) -> dict:
    """Schema of a whole number within [low, high] (or None)."""
    return {"type": ["integer", "null"] if null else "integer", "minimum": low, "maximum": high}


def share(positive: bool = False) -> dict:
    """Schema of a number within [0, 1] (or (0, 1])."""
    return {"type": "number", "exclusiveMinimum" if positive else "minimum": 0, "maximum": 1}


FLAG = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 1}
LIMITS = {"description": "a whole number >= 1, or a mapping from split to one, or from split to class to one; or None",
          "type": ["integer", "object", "null"], "minimum": 1, "propertyNames": {"enum": list(SPLITS)},
          "additionalProperties": {"type": ["integer", "object", "null"], "minimum": 1,
                                   "propertyNames": {"enum": list(CLASSES)}, "additionalProperties": COUNT}}

PARAMETERS = {
    # the data every chapter reads, and its intervals
    "seed": Param(whole(0, 2**31 - 1), 42, "seed for the split, sampling, initial weights and shuffling"),
    "fractions": Param({"description": "three numbers >= 0 (train, val, test) summing to 1", "type": "array",
                        "items": {"type": "number", "minimum": 0}, "minItems": 3, "maxItems": 3, "sumsTo": 1},
                       (0.8, 0.1, 0.1), "patient shares of train, val and test"),
    "caps": Param(LIMITS, REPORT_COUNTS, "at most this many images per split (and class); the report's sizes in full"),
    "training_set": Param({"enum": list(TRAINING_SETS)}, "more", "the report's first (7,996) or larger training set"),
    "max_per_class": Param(LIMITS, None, "images per class and split, for quick profiles"),
    "max_per_patient": Param(whole(1, 100_000, null=True), None, "at most this many images of one patient (their "
                             "images are correlated: in the sample one would supply most of a class's test images)"),
    "max_patient_share": Param({"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1}, None,
                               "no patient may supply more than this share of a class's validation or test images "
                               "(None: no check)"),
    "harmonise_resolution": Param(FLAG, False, "bring every image to the source's smallest native size first, so "
                                  "resolution cannot act as a label"),
    "on_bad_image": Param({"enum": list(ON_BAD_IMAGE)}, "fail",
                          "an unreadable image stops the run, or is skipped and counted"),
    # training
    "epochs": Param(whole(1, 10_000), 30, "most epochs per model"),
    "patience": Param(whole(1, 10_000), 5, "epochs without validation improvement before stopping"),
    "batch_size": Param(whole(1, 4096), 16, "images per batch"),
    "learning_rate": Param(share(positive=True), 1e-4, "Adam's learning rate"),
    "image_size": Param(whole(16, 1024), 250, "input size in pixels (250 in the report)"),
    "resize_to": Param(whole(16, 1024), 227, "the resizer's output size (227 in the report)"),
    "mixed_precision": Param(FLAG, False, "float16 compute on a GPU"),
    "class_weight": Param({"enum": list(CLASS_WEIGHTS)}, "none", "weight the loss by class ('balanced', so that "
                          "small, imbalanced sets do not collapse to No Finding) or not (the report)"),
    "balance_predictions": Param(FLAG, False, "shift the classifier's biases so each class's mean probability on "
                                 "validation is the prior it trained for: equal under class_weight=balanced, else "
                                 "the class's share there (false: the report's plain argmax)"),
    "deterministic": Param(FLAG, True, "TensorFlow's deterministic ops (bit-identical reruns; slower on a GPU)"),
    # the fused network (section 3.4)
    "dense_units": Param(whole(1, 65_536), 2048, "units of each of the two dense layers"),
    "resizer": Param(FLAG, True, "learnable resizer (true) or plain bilinear resize"),
    "augment": Param(FLAG, False, "flip, rotation and contrast augmentation"),
    # Hyperband (section 3.3)
    "hyperband_max_epochs": Param(whole(1, 10_000), 70, "Hyperband's largest budget per trial"),
    "hyperband_factor": Param(whole(2, 100), 3, "Hyperband's reduction factor"),
    "tuner_workers": Param(whole(0, 64), 0, "Hyperband workers under keras-tuner's distributed mode (a chief plus "
                           "one per visible GPU, or this many on CPUs); 0 searches in the chapter's own process"),
    "hyperband_iterations": Param(whole(1, 100), 1, "Hyperband brackets repeated"),
    # pretrained backbones (section 4)
    "backbone_size": Param(whole(32, 1024), 224, "backbone input size (224 in the report)"),
    "backbones": Param({"type": "array", "items": {"enum": list(BACKBONES)}, "minItems": 1}, BACKBONES,
                       "backbones to run"),
    "fine_tune": Param({"enum": list(FINE_TUNE)}, "all",
                       "unfreeze points: none, the first (cheapest) or all of the report's"),
    "fine_tune_epochs": Param(whole(1, 10_000), 50, "most epochs of each fine tuning"),
    "augmented_copies": Param(whole(1, 1000), 10, "augmented copies of the training images whose features train the "
                              "heads with augmentation (4.1.1.4, 4.2.1.3): copy e mod n in epoch e"),
    "fine_tune_augment": Param({"enum": list(FINE_TUNE_AUGMENT)}, "report", "augment fine tuning as the report per "
                               "backbone, always or never"),
    "feature_learning_rate": Param(share(positive=True), 1e-3, "learning rate of the head on cached features"),
    "fine_tune_learning_rate": Param(share(positive=True), 1e-5, "learning rate of fine tuning"),
    "allow_random_weights": Param(FLAG, False, "continue from seeded random weights where none are found"),
    "allow_partial_weights": Param(FLAG, False, "accept a CheXNet file that leaves some layers without weights (the "
                                   "page then says how many were loaded)"),
    "chexnet_weights": Param({"type": ["string", "null"], "minLength": 1}, None, "a CheXNet Keras weights file"),
    # analysis chapters
    "examples_per_class": Param(whole(1, 64), 4, "example images shown per class"),
    "per_class": Param(whole(1, 64), 4, "misclassified images shown per class"),
    "activation_maps": Param(whole(1, 512), 32, "feature maps shown per layer"),
    "ga_population": Param(whole(4, 10_000), 40, "genetic algorithm: population"),
    "ga_generations": Param(whole(1, 10_000), 60, "genetic algorithm: generations"),
    "ga_crossover": Param(share(), 0.9, "genetic algorithm: crossover probability"),
    "ga_mutation": Param(share(), 0.2, "genetic algorithm: mutation probability"),
    "ga_crossover_genes": Param(share(), 0.5, "genetic algorithm: share of genes crossed"),
    "ga_tournament": Param(whole(2, 1000), 3, "genetic algorithm: tournament size"),
    "ga_elitism": Param(share(), 0.1, "genetic algorithm: share of elites kept"),
    "ga_restarts": Param(whole(1, 100), 3, "genetic algorithm: independent restarts"),
    "bootstrap": Param(whole(10, 1_000_000), 1000, "patient bootstrap resamples behind every interval"),
}
# parameters every chapter takes (they shape its data or its intervals), and groups that chapters take together
EVERY = ("seed", "fractions", "caps", "training_set", "max_per_class", "max_per_patient", "max_patient_share",
         "harmonise_resolution", "on_bad_image", "bootstrap")
TRAINS = ("epochs", "patience", "batch_size", "mixed_precision", "class_weight", "balance_predictions",
          "deterministic")
SCRATCH_NETS = ("learning_rate", "image_size", "resize_to")  # the report's own nets, trained from scratch
HYPERBAND = ("hyperband_max_epochs", "hyperband_factor", "tuner_workers", "hyperband_iterations")
PRETRAINED = ("backbone_size", "backbones", "fine_tune", "fine_tune_epochs", "augmented_copies", "fine_tune_augment",
              "feature_learning_rate", "fine_tune_learning_rate", "allow_random_weights", "allow_partial_weights",
              "chexnet_weights")
GA = ("ga_population", "ga_generations", "ga_crossover", "ga_mutation", "ga_crossover_genes", "ga_tournament",
      "ga_elitism", "ga_restarts")


@dataclass(frozen=True)
class ChapterFacts:
    """What the manifest states of one chapter. models: our model, "chapter/model" for one it shows from another
    chapter, or a name prefix ending in '_' -> the report's row it reproduces (a model missing has no counterpart);
    questions: (question, model a, model b, the report's row for a, for b), answered from the interval of a - b."""

    reads: tuple = ()  # chapters whose results it reads
    takes: tuple = ()  # its parameters beyond EVERY
    models: dict = field(default_factory=dict)
    questions: tuple = ()
    family: str = ""  # its models in words, for the build page's headline row ('' for no row)
    work: str = ""  # what it spends its time on, for the build page's timings


# dict order is the book's (the report's) order
REGISTRY = {
    "dataset": ChapterFacts(takes=("examples_per_class",),
                            work="reads the label files and decodes each image once"),
    "baseline": ChapterFacts(work="gradient boosting on the fields of NIH's label file (no image)"),
    "preprocessing": ChapterFacts(
        ("scratch", "fused_grid"), TRAINS + SCRATCH_NETS, family="Otsu preprocessing",
        work="Otsu-masked copies of the images, then the second CNN trained on them",
        models={"second_cnn_otsu": "Prep_scratch", "scratch/second_cnn": "No_prep_scratch",
                "fused_grid/no_da_no_rs_prep": "Prep_fused", "fused_grid/no_da_no_rs_4096": "No_prep_fused"},
        questions=(("Does Otsu preprocessing help the CNN from scratch?", "second_cnn_otsu", "scratch/second_cnn",
                    "Prep_scratch", "No_prep_scratch"),
                   ("Does Otsu preprocessing help the fused network?", "fused_grid/no_da_no_rs_prep",
                    "fused_grid/no_da_no_rs_4096", "Prep_fused", "No_prep_fused"))),
    "resizer": ChapterFacts(
        ("fused", "fused_grid"), SCRATCH_NETS, family="learnable resizer",
        work="the fused net's trained resizer, and the grid's variants with and without it",
        models={"fused_grid/yes_da_yes_rs_4096": "Resizer_1", "fused_grid/no_da_yes_rs_4096": "Resizer_2",
                "fused_grid/yes_da_no_rs_4096": "No_resizer_1", "fused_grid/no_da_no_rs_4096": "No_resizer_2"},
        questions=(("Does the learnable resizer help (no augmentation)?", "fused_grid/no_da_yes_rs_4096",
                    "fused_grid/no_da_no_rs_4096", "Resizer_2", "No_resizer_2"),
                   ("Does the learnable resizer help (with augmentation)?", "fused_grid/yes_da_yes_rs_4096",
                    "fused_grid/yes_da_no_rs_4096", "Resizer_1", "No_resizer_1"))),
    "scratch": ChapterFacts(
        (), TRAINS + SCRATCH_NETS, family="CNN from scratch", work="the report's two from-scratch CNNs",
        models={"second_cnn": "CNN_from_scratch"},
        questions=(("Is the second CNN better than the first?", "second_cnn", "first_cnn", "CNN_from_scratch",
                    None),)),
    "hyperband": ChapterFacts(
        ("scratch",), TRAINS + SCRATCH_NETS + HYPERBAND, family="Hyperband-tuned CNN",
        work="a Hyperband search over the second CNN's head, then the tuned CNN",
        models={"tuned_cnn": "Tuner", "scratch/second_cnn": "Pre_tuner"},
        questions=(("Did Hyperband find a better head than trial and error?", "tuned_cnn", "scratch/second_cnn",
                    "Tuner", "Pre_tuner"),)),
    "fused": ChapterFacts((), TRAINS + SCRATCH_NETS + ("dense_units", "resizer", "augment"), family="fused network",
                          work="the fused CNN", models={"fused": "Fused"}),
    "fused_grid": ChapterFacts(
        ("fused",), TRAINS + SCRATCH_NETS, family="fused network variants",
        work="the base net and the report's grid of fused variants",
        models={"base": "Base", "fused/fused": "no_da_yes_rs_2048", **{name: name for name in (
            "no_da_no_rs_prep", "yes_da_yes_rs_4096", "no_da_yes_rs_4096", "yes_da_no_rs_4096", "no_da_no_rs_4096")}},
        questions=(("Do the fused branches help (fused against base)?", "fused/fused", "base", "Fused", "Base"),
                   ("Does augmentation help the fused network (with resizer)?", "yes_da_yes_rs_4096",
                    "no_da_yes_rs_4096", "yes_da_yes_rs_4096", "no_da_yes_rs_4096"))),
    "pretrained": ChapterFacts(
        (), TRAINS + PRETRAINED, family="pretrained backbones",
        work="features and fine tuning of four backbones (VGG16, ResNet152, ResNet50, DenseNet121)",
        models={"vgg16_finetune_": "VGG16", "resnet152_finetune_": "ResNet152", "chexnet_finetune_": "CheXNet1"}),
    "error_analysis": ChapterFacts(("scratch", "fused", "pretrained"), ("per_class",),
                                   work="loads every chosen model; Grad-CAM of the misclassified images, cached "
                                        "for the browser"),
    "explainability": ChapterFacts(("scratch", "fused", "pretrained"), ("activation_maps",),
                                   work="activation maps and Grad-CAM of every model, scored against NIH's boxes"),
    "ensemble": ChapterFacts(
        ("scratch", "fused", "pretrained"), GA, family="ensembles",
        work="genetic algorithm and differential evolution on validation predictions, patient bootstrap",
        models={"average": "Average voting", "ga": "Weighted average voting", "pretrained/vgg16_": "VGG16",
                "pretrained/resnet152_": "ResNet152", "pretrained/chexnet_": "CheXNet1",
                "fused/fused": "Fused (ensemble member)", "scratch/second_cnn": "CNN From Scratch (ensemble member)"}),
    "subgroups": ChapterFacts(("baseline", "scratch", "fused", "pretrained", "ensemble"),
                              work="patient-clustered bootstrap of error rates by sex, age and view; the shortcut "
                                   "check"),
    "conclusions": ChapterFacts(("baseline", "preprocessing", "resizer", "hyperband", "fused_grid", "ensemble"),
                                work="reads every chapter's metrics"),
}
CHAPTERS = {name: facts.reads for name, facts in REGISTRY.items()}  # chapter -> the chapters it reads
FROM_SCRATCH = tuple(name for name, facts in REGISTRY.items() if "resize_to" in facts.takes)
QUESTIONS = {name: facts.questions for name, facts in REGISTRY.items() if facts.questions}

# The report's five best models (error analysis, explainability, ensembles), each found by (chapter,
# model-name prefix); which of a label's candidates stands for it is chosen on validation.
REPORT_MODELS = {
    "VGG16": ("pretrained", "vgg16_"),
    "ResNet152": ("pretrained", "resnet152_"),
    "CheXNet": ("pretrained", "chexnet_"),
    "Fused": ("fused", "fused"),
    "CNN from scratch": ("scratch", "second_cnn"),
}

# Each profile's settings: every parameter's default (the report's), and two settings that are no parameter.
REPORT_SETTINGS = {**{name: p.default for name, p in PARAMETERS.items()},
                   "min_per_split": 10,  # images of every class in every split, else the run stops before training
                   "run_eagerly": False}  # graph tracing pays off over many steps
# The sample on a CPU: at most two images of one patient, class weights and balanced predictions (a net trained on a
# few hundred images otherwise names No Finding for nearly everything), every image first harmonised to the sample's
# smallest native size (64 px), so larger inputs add pixels but no information.
SAMPLE = {"fractions": (0.6, 0.2, 0.2), "caps": None, "max_per_patient": 2, "max_patient_share": 0.25,
          "class_weight": "balanced", "balance_predictions": True, "harmonise_resolution": True,
          "allow_random_weights": True, "fine_tune": "first"}
PROFILES = {
    # seconds per chapter: tiny images, a few epochs, a handful of images per class; run eagerly, since tracing a
    # deep backbone takes longer than so few steps
    "smoke": {**REPORT_SETTINGS, **SAMPLE, "min_per_split": 1, "run_eagerly": True, "image_size": 64, "resize_to": 57,
              "epochs": 1, "patience": 2, "max_per_class": {"train": 16, "val": 8, "test": 8}, "backbone_size": 32,
              "fine_tune_epochs": 1, "hyperband_max_epochs": 2, "augmented_copies": 1, "ga_population": 12,
              "ga_generations": 8,
              "bootstrap": 100},
    # a 2-core laptop: enough epochs to learn something; the from-scratch nets take 96 px, the backbones 64 px
    "cpu": {**REPORT_SETTINGS, **SAMPLE, "min_per_split": 3, "image_size": 96, "resize_to": 87, "epochs": 25,
            "patience": 8, "backbone_size": 64, "fine_tune_epochs": 5, "hyperband_max_epochs": 6, "augmented_copies": 2},
    # the report's settings, meant for a GPU and the real dataset
    "full": REPORT_SETTINGS,
}


def profile_settings(profile: str) -> dict:
    """Fail early on a typo in a profile name rather than deep inside a chapter."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[profile])


def needed(names=None) -> dict:
    """The dependency graph of the requested chapters and everything they read (all chapters by default)."""
    unknown = [name for name in names or () if name not in CHAPTERS]
    if unknown:
        raise RunnerError(f"unknown chapter {unknown[0]!r}; chapters: {', '.join(CHAPTERS)}")
    graph, todo = {}, list(names or CHAPTERS)
    while todo:
        name = todo.pop()
        if name not in graph:
            graph[name] = CHAPTERS[name]
            todo.extend(CHAPTERS[name])
    return graph


def chapter_order(names=None) -> list:
    """The requested chapters plus everything they read: dependencies first, else in the book's order."""
    book = list(CHAPTERS)
    sorter = graphlib.TopologicalSorter(needed(names))
    sorter.prepare()
    ready, order = set(), []
    while sorter.is_active():
        ready.update(sorter.get_ready())
        chapter = min(ready, key=book.index)
        ready.remove(chapter)
        order.append(chapter)
        sorter.done(chapter)
    return order


def parameter_names(chapter: str) -> list:
    """The parameters a chapter takes, in PARAMETERS' order."""
    takes = {*EVERY, *REGISTRY[chapter].takes}
    return [name for name in PARAMETERS if name in takes]


def takes(chapter: str, name: str) -> bool:
    """Whether a chapter takes a parameter (name in any case)."""
    return name.lower() in parameter_names(chapter)


def counterpart(chapter: str, model: str):
    """The report's row that `model` (a model of `chapter`, or "chapter/model") reproduces as `chapter` shows it,
    or None where the report has none."""
    models = REGISTRY[chapter].models if chapter in REGISTRY else {}
    return next((row for name, row in models.items()
                 if model == name or (name.endswith("_") and model.startswith(name))), None)


@functools.cache
def _validator():
    """jsonschema's validator with Python's types (a tuple is an array; a number is finite; True is no integer) and
    one keyword of ours, sumsTo (the fractions)."""
    from jsonschema import Draft202012Validator, ValidationError, validators

    def number(_, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def sums_to(validator, total, value, _):
        numbers = validator.is_type(value, "array") and all(number(None, v) for v in value)
        if numbers and not math.isclose(sum(value), total, abs_tol=1e-9):
            yield ValidationError(f"{list(value)} does not sum to {total}")

    types = Draft202012Validator.TYPE_CHECKER.redefine_many({
        "array": lambda _, v: isinstance(v, (list, tuple)), "number": number,
        "integer": lambda _, v: isinstance(v, int) and not isinstance(v, bool)})
    return validators.extend(Draft202012Validator, {"sumsTo": sums_to}, type_checker=types)


def normal(schema: dict, value):
    """A value in the form the chapters use: a choice matched in any case ('None' or None for 'none'), a whole
    number given for a number as a float, a list as a tuple."""
    choices = schema.get("enum", ())
    if isinstance(value, str) or value is None:
        return next((c for c in choices if str(c).lower() == str(value).lower()), value)
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return tuple(value) if isinstance(value, list) else value


def check(name: str, value, chapter: str | None = None):
    """value, normalised, where the manifest allows it for this parameter (and chapter); else ParameterError in
    one line that echoes what was typed and says the nearest name or what is allowed."""
    from jsonschema.exceptions import best_match

    key = name.lower()
    if key not in PARAMETERS:
        near = difflib.get_close_matches(key, PARAMETERS, n=1)
        hint = f"did you mean {near[0]}?" if near else f"`cxr list {chapter or 'CHAPTER'}` lists its parameters"
        raise ParameterError(f"unknown parameter {name}={value!r}; {hint}")
    if chapter is not None and not takes(chapter, key):
        owners = [c for c in REGISTRY if takes(c, key)]
        raise ParameterError(f"chapter '{chapter}' has no parameter {key} (it belongs to {', '.join(owners)})")
    schema = PARAMETERS[key].schema
    typed, value = value, normal(schema, value)
    error = best_match(_validator()(schema).iter_errors(value))
    if error is not None:
        where = "".join(f"[{p!r}]" for p in error.absolute_path)
        raise ParameterError(f"parameter {name}={typed!r} is not allowed: {error.message}"
                             + (f" (at {key}{where})" if where else ""))
    return value


def resolve_parameters(chapter: str, profile: str, params: dict):
    """The profile's defaults, overridden by every parameter that is not None, each checked first.

    Returns the settings and the overrides that differ from the defaults (for provenance).
    """
    defaults = profile_settings(profile)
    given = {k.lower(): check(k, v, chapter if chapter in REGISTRY else None)
             for k, v in params.items() if v is not None}
    changed = {k: v for k, v in given.items() if v != normal(PARAMETERS[k].schema, defaults.get(k))}
    return {**defaults, **given}, changed


CELL_HEAD = ('PROFILE = "cpu"  # smoke, cpu or full\n'
             'DATA_DIR = None  # an NIH ChestX-ray14 folder; None: the real sample shipped in data/; "synthetic": '
             'synthetic images\n'
             "# every None below takes the profile's value (`cxr list CHAPTER` shows types, defaults and ranges)\n")


def parameters_cell(chapter: str) -> str:
    """The source of a chapter notebook's cell tagged 'parameters', generated from the manifest (never edited by
    hand: `make cells` writes it into every notebook, and a test fails where a notebook's cell differs)."""
    return CELL_HEAD + "".join(f"{name.upper()} = None  # {PARAMETERS[name].help}\n"
                               for name in parameter_names(chapter))
