"""Every chapter parameter in one table: its type, its allowed range and the chapters that take it.

The runner checks `-p` values against this table before anything runs, `cxr list` prints it, and
`open_chapter` checks a notebook's parameters cell with it, so a bad value is refused in one line
that names the parameter, the value given and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from cxrlib.core.config import CLASSES, profile_settings
from cxrlib.core.registry import FROM_SCRATCH, REGISTRY, TRAINING

SPLIT_NAMES = ("train", "val", "test")
BACKBONE_NAMES = ("vgg16", "resnet152", "resnet50", "chexnet")
ALL = "all"


class ParameterError(ValueError):
    """A parameter value outside what the table allows."""


@dataclass(frozen=True)
class Param:
    """One parameter: kind ('int', 'float', 'bool', 'choice', 'path', 'fractions', 'limits', 'list'),
    bounds or choices, whether None is allowed, the chapters that take it, and a help line."""

    kind: str
    help: str
    chapters: object = ALL
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    nullable: bool = False
    low_open: bool = False

    def allowed(self) -> str:
        """What the table allows, in words, for error messages and `cxr list`."""
        none = " or None" if self.nullable else ""
        if self.kind in ("int", "float"):
            word = "a whole number" if self.kind == "int" else "a number"
            shown = (lambda v: f"{int(v):,}") if self.kind == "int" else (lambda v: f"{v:g}")
            low = "" if self.low is None else f"{'>' if self.low_open else '>='} {shown(self.low)}"
            high = "" if self.high is None else f"<= {shown(self.high)}"
            return f"{word} {' and '.join(x for x in (low, high) if x)}{none}".replace("  ", " ")
        if self.kind == "bool":
            return f"true or false{none}"
        if self.kind == "choice":
            return f"one of {', '.join(map(repr, self.choices))}{none}"
        if self.kind == "list":
            return f"a non-empty list drawn from {', '.join(self.choices)}"
        if self.kind == "fractions":
            return "three non-negative numbers (train, val, test) summing to 1"
        if self.kind == "limits":
            return (f"a whole number >= 1, or a mapping from split ({', '.join(SPLIT_NAMES)}) to a whole "
                    f"number or to a mapping from class to a whole number{none}")
        return f"a file path{none}"

    def takes(self, chapter: str) -> bool:
        """Whether a chapter has this parameter."""
        return self.chapters == ALL or chapter in self.chapters


_int = partial(Param, "int")
_float = partial(Param, "float")

PARAMETERS = {
    # the data every chapter reads: these shape the split, so every chapter takes them
    "seed": _int(help="seed for the split, sampling, initial weights and shuffling", low=0, high=2**31 - 1),
    "fractions": Param("fractions", help="patient shares of train, val and test"),
    "caps": Param("limits", help="at most this many images per split (and class); the report's sizes in full",
                  nullable=True),
    "training_set": Param("choice", help="the report's first (7,996) or larger training set",
                          choices=("first", "more")),
    "max_per_class": Param("limits", help="images per class and split, for quick profiles", nullable=True),
    "harmonise_resolution": Param("bool", help="bring every image to the source's smallest native size first, "
                                  "so resolution cannot act as a label"),
    "on_bad_image": Param("choice", help="an unreadable image stops the run, or is skipped and counted",
                          choices=("fail", "skip")),
    # training
    "epochs": _int(help="most epochs per model", chapters=TRAINING, low=1, high=10_000),
    "patience": _int(help="epochs without validation improvement before stopping", chapters=TRAINING,
                     low=1, high=10_000),
    "batch_size": _int(help="images per batch", chapters=TRAINING, low=1, high=4096),
    "learning_rate": _float(help="Adam's learning rate", chapters=FROM_SCRATCH, low=0, high=1, low_open=True),
    "image_size": _int(help="input size in pixels (250 in the report)", chapters=FROM_SCRATCH, low=16, high=1024),
    "resize_to": _int(help="the resizer's output size (227 in the report)", chapters=FROM_SCRATCH,
                      low=16, high=1024),
    "mixed_precision": Param("bool", help="float16 compute on a GPU", chapters=TRAINING),
    "class_weight": Param("choice", help="weight the loss by class ('balanced') or not (the report)",
                          chapters=TRAINING, choices=("none", "balanced"), nullable=True),
    "balance_predictions": Param("bool", help="shift the classifier's biases so every class has the same mean "
                                 "probability on validation (false: the report's plain argmax)", chapters=TRAINING),
    "deterministic": Param("bool", help="TensorFlow's deterministic ops (bit-identical reruns; slower on a GPU)",
                           chapters=TRAINING),
    # the fused network (section 3.4)
    "dense_units": _int(help="units of each of the two dense layers", chapters=("fused",), low=1, high=65_536),
    "resizer": Param("bool", help="learnable resizer (true) or plain bilinear resize", chapters=("fused",)),
    "augment": Param("bool", help="flip, rotation and contrast augmentation", chapters=("fused",)),
    # Hyperband (section 3.3)
    "hyperband_max_epochs": _int(help="Hyperband's largest budget per trial", chapters=("hyperband",),
                                 low=1, high=10_000),
    "hyperband_factor": _int(help="Hyperband's reduction factor", chapters=("hyperband",), low=2, high=100),
    "tuner_workers": _int(help="Hyperband workers under keras-tuner's distributed mode (a chief plus one per visible "
                          "GPU, or this many on CPUs); 0 searches in the chapter's own process",
                          chapters=("hyperband",), low=0, high=64),
    "hyperband_iterations": _int(help="Hyperband brackets repeated", chapters=("hyperband",), low=1, high=100),
    # pretrained backbones (section 4)
    "backbone_size": _int(help="backbone input size (224 in the report)", chapters=("pretrained",),
                          low=32, high=1024),
    "backbones": Param("list", help="backbones to run", chapters=("pretrained",), choices=BACKBONE_NAMES),
    "fine_tune": Param("choice", help="unfreeze points: none, the first (cheapest) or all of the report's",
                       chapters=("pretrained",), choices=("none", "first", "all")),
    "fine_tune_epochs": _int(help="most epochs of each fine tuning", chapters=("pretrained",), low=1, high=10_000),
    "fine_tune_augment": Param("choice", help="augment fine tuning as the report per backbone, always or never",
                               chapters=("pretrained",), choices=("report", "always", "never")),
    "augmented_copies": _int(help="augmented copies of the training images whose features train the heads with "
                             "augmentation", chapters=("pretrained",), low=1, high=1000),
    "feature_learning_rate": _float(help="learning rate of the head on cached features", chapters=("pretrained",),
                                    low=0, high=1, low_open=True),
    "fine_tune_learning_rate": _float(help="learning rate of fine tuning", chapters=("pretrained",),
                                      low=0, high=1, low_open=True),
    "allow_random_weights": Param("bool", help="continue from seeded random weights where none are found",
                                  chapters=("pretrained",)),
    "allow_partial_weights": Param("bool", help="accept a CheXNet file that leaves some layers without weights "
                                   "(the page then says how many were loaded)", chapters=("pretrained",)),
    "chexnet_weights": Param("path", help="a CheXNet Keras weights file", chapters=("pretrained",), nullable=True),
    # analysis chapters
    "examples_per_class": _int(help="example images shown per class", chapters=("dataset",), low=1, high=64),
    "per_class": _int(help="misclassified images shown per class", chapters=("error_analysis",), low=1, high=64),
    "activation_maps": _int(help="feature maps shown per layer", chapters=("explainability",), low=1, high=512),
    "ga_population": _int(help="genetic algorithm: population", chapters=("ensemble",), low=4, high=10_000),
    "ga_generations": _int(help="genetic algorithm: generations", chapters=("ensemble",), low=1, high=10_000),
    "ga_crossover": _float(help="genetic algorithm: crossover probability", chapters=("ensemble",), low=0, high=1),
    "ga_mutation": _float(help="genetic algorithm: mutation probability", chapters=("ensemble",), low=0, high=1),
    "ga_crossover_genes": _float(help="genetic algorithm: share of genes crossed", chapters=("ensemble",),
                                 low=0, high=1),
    "ga_tournament": _int(help="genetic algorithm: tournament size", chapters=("ensemble",), low=2, high=1000),
    "ga_elitism": _float(help="genetic algorithm: share of elites kept", chapters=("ensemble",), low=0, high=1),
    "ga_restarts": _int(help="genetic algorithm: independent restarts", chapters=("ensemble",), low=1, high=100),
    "bootstrap": _int(help="patient bootstrap resamples", chapters=("ensemble", "subgroups"), low=10, high=1_000_000),
}


def _number(value, kind: str) -> bool:
    """int for 'int' (never bool), int or float for 'float', finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (kind == "float" or isinstance(value, int)) and math.isfinite(value)


def _in_range(p: Param, value) -> bool:
    """Inside the parameter's bounds."""
    if p.low is not None and (value <= p.low if p.low_open else value < p.low):
        return False
    return p.high is None or value <= p.high


def _limits_ok(value) -> bool:
    """An int >= 1, or split -> int, or split -> class -> int."""
    def count(v):
        return _number(v, "int") and v >= 1
    if count(value):
        return True
    if not isinstance(value, dict) or not set(value) <= set(SPLIT_NAMES):
        return False
    return all(v is None or count(v) or (isinstance(v, dict) and set(v) <= set(CLASSES)
                                         and all(count(n) for n in v.values())) for v in value.values())


def is_allowed(p: Param, value) -> bool:
    """Whether value fits the parameter's type and range."""
    if value is None:
        return p.nullable
    if p.kind in ("int", "float"):
        return _number(value, p.kind) and _in_range(p, value)
    if p.kind == "bool":
        return isinstance(value, bool)
    if p.kind == "choice":
        return value in p.choices
    if p.kind == "list":
        return isinstance(value, (list, tuple)) and bool(value) and all(v in p.choices for v in value)
    if p.kind == "fractions":
        return (isinstance(value, (list, tuple)) and len(value) == 3 and all(_number(v, "float") and v >= 0
                                                                            for v in value)
                and math.isclose(sum(value), 1.0, abs_tol=1e-9))
    if p.kind == "limits":
        return _limits_ok(value)
    return isinstance(value, str) and bool(value.strip())


def check(name: str, value, chapter: str | None = None):
    """Return value (normalised) if the table allows it; else raise naming parameter, value and rule."""
    key = name.lower()
    if key not in PARAMETERS:
        raise ParameterError(f"unknown parameter {name}={value!r}; known: {', '.join(PARAMETERS)}")
    p = PARAMETERS[key]
    if chapter is not None and not p.takes(chapter):
        raise ParameterError(f"chapter '{chapter}' has no parameter {key} (it belongs to "
                             f"{', '.join(p.chapters)})")
    if p.kind == "float" and _number(value, "int"):
        value = float(value)
    if p.kind == "choice" and value is None and "none" in p.choices:
        value = "none"
    if not is_allowed(p, value):
        raise ParameterError(f"parameter {key}={value!r} is not allowed: expected {p.allowed()}")
    if p.kind in ("list", "fractions"):
        value = tuple(value)
    return value


def resolve_parameters(chapter: str, profile: str, params: dict):
    """Profile and chapter defaults, overridden by every parameter that is not None, each checked first.

    Returns the settings and the overrides that differ from the defaults (for provenance).
    """
    defaults = {**profile_settings(profile), **(REGISTRY[chapter].defaults if chapter in REGISTRY else {})}
    given = {k.lower(): check(k, v, chapter if chapter in REGISTRY else None)
             for k, v in params.items() if v is not None}
    changed = {k: v for k, v in given.items() if v != _normal(k, defaults.get(k))}
    return {**defaults, **given}, changed


def _normal(name: str, value):
    """A default in the form check() returns, so that giving the default counts as no change."""
    if isinstance(value, list):
        return tuple(value)
    return "none" if value is None and name == "class_weight" else value


def parameter_names(chapter: str) -> list:
    """The parameter names a chapter takes, in table order."""
    return [name for name, p in PARAMETERS.items() if p.takes(chapter)]


def chapter_default(name: str):
    """A chapter-specific default (the registry's), when the profiles do not set one."""
    return next((facts.defaults[name] for facts in REGISTRY.values() if name in facts.defaults), None)
