"""The chapters of the book and every fact about them: the results each reads, its parameter defaults, its
headline row, the report's models it holds and what it spends its time on. The one registry every layer reads.

The runner executes chapters in dependency order (graphlib), the parameter table knows which chapters take
which parameters, and the pages and repro tools name chapters from here; nothing here imports the library.
"""
from __future__ import annotations

import graphlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChapterFacts:
    """What the library knows about one chapter."""

    reads: tuple = ()  # chapters whose results it reads
    defaults: dict = field(default_factory=dict)  # its own parameters (profile settings apply to every chapter)
    family: str = ""  # its models in words, for the build page's headline row ('' for no row)
    work: str = ""  # what it spends its time on, for the build page's timings
    trains: bool = False  # it trains models (takes epochs, patience, batch size)
    from_scratch: bool = False  # it trains the report's own nets (takes image size and learning rate)


# dict order is the book's (the report's) order
REGISTRY = {
    "dataset": ChapterFacts(defaults={"examples_per_class": 4},
                            work="reads the label files and decodes each image once"),
    "baseline": ChapterFacts(work="gradient boosting on the fields of NIH's label file (no image)"),
    "preprocessing": ChapterFacts(("scratch", "fused_grid"), family="Otsu preprocessing", trains=True,
                                  from_scratch=True,
                                  work="Otsu-cropped copies of the images, then the fused net trained on them"),
    "resizer": ChapterFacts(("fused", "fused_grid"), family="learnable resizer", trains=True, from_scratch=True,
                            work="the learnable resizer with and without augmentation"),
    "scratch": ChapterFacts(family="CNN from scratch", trains=True, from_scratch=True,
                            work="the report's two from-scratch CNNs"),
    "hyperband": ChapterFacts(("scratch",), family="Hyperband-tuned CNN", trains=True, from_scratch=True,
                              work="a Hyperband search over the fused net's head"),
    "fused": ChapterFacts(family="fused network", trains=True, from_scratch=True, work="the fused CNN"),
    "fused_grid": ChapterFacts(("fused",), family="fused network variants", trains=True, from_scratch=True,
                               work="the base net and the report's grid of fused variants"),
    "pretrained": ChapterFacts(defaults={"backbones": ("vgg16", "resnet152", "resnet50", "chexnet")},
                               family="pretrained backbones", trains=True,
                               work="features and fine tuning of four backbones (VGG16, ResNet152, ResNet50, "
                                    "DenseNet121)"),
    "error_analysis": ChapterFacts(("scratch", "fused", "pretrained"), defaults={"per_class": 4},
                                   work="loads every chosen model; Grad-CAM of the misclassified images, cached "
                                        "for the browser"),
    "explainability": ChapterFacts(("scratch", "fused", "pretrained"), defaults={"activation_maps": 32},
                                   work="activation maps and Grad-CAM of every model, scored against NIH's boxes"),
    "ensemble": ChapterFacts(("scratch", "fused", "pretrained"), family="ensembles",
                             defaults={"ga_crossover": 0.9, "ga_mutation": 0.2, "ga_crossover_genes": 0.5,
                                       "ga_tournament": 3, "ga_elitism": 0.1, "ga_restarts": 3},
                             work="genetic algorithm and differential evolution on validation predictions, "
                                  "patient bootstrap"),
    "subgroups": ChapterFacts(("baseline", "scratch", "fused", "pretrained", "ensemble"),
                              work="patient-clustered bootstrap of error rates by sex, age and view; the "
                                   "shortcut check"),
    "conclusions": ChapterFacts(("preprocessing", "resizer", "hyperband", "fused_grid", "ensemble"),
                                work="reads every chapter's metrics"),
}
CHAPTERS = {name: facts.reads for name, facts in REGISTRY.items()}  # chapter -> the chapters it reads
TRAINING = tuple(name for name, facts in REGISTRY.items() if facts.trains)
FROM_SCRATCH = tuple(name for name, facts in REGISTRY.items() if facts.from_scratch)

# The report's five best models (error analysis, explainability, ensembles), each found by (chapter,
# model-name prefix); which of a label's candidates stands for it is chosen on validation.
REPORT_MODELS = {
    "VGG16": ("pretrained", "vgg16_"),
    "ResNet152": ("pretrained", "resnet152_"),
    "CheXNet": ("pretrained", "chexnet_"),
    "Fused": ("fused", "fused"),
    "CNN from scratch": ("scratch", "second_cnn"),
}
HEADLINE_METRICS = ("Accuracy", "F1-macro", "ROC AUC")


class RunnerError(RuntimeError):
    """A problem the user can fix: unknown chapter or parameter, failed chapter, missing pages."""


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
