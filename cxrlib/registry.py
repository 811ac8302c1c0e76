"""The chapters of the book, the results each one reads, and their order: the one registry every layer reads.

The runner executes chapters in this order, parameters know which chapters take them, and the pages and
repro tools name chapters from it; nothing here imports anything else of the library.
"""
from __future__ import annotations


# chapter -> chapters whose results it reads; dict order is the book's (the report's) order
CHAPTERS = {
    "dataset": (),
    "preprocessing": ("scratch", "fused_grid"),
    "resizer": ("fused", "fused_grid"),
    "scratch": (),
    "hyperband": ("scratch",),
    "fused": (),
    "fused_grid": ("fused",),
    "pretrained": (),
    "error_analysis": ("scratch", "fused", "pretrained"),
    "explainability": ("scratch", "fused", "pretrained"),
    "ensemble": ("scratch", "fused", "pretrained"),
    "subgroups": ("scratch", "fused", "pretrained", "ensemble"),
    "conclusions": ("preprocessing", "resizer", "hyperband", "fused_grid", "ensemble"),
}


class RunnerError(RuntimeError):
    """A problem the user can fix: unknown chapter or parameter, failed chapter, missing pages."""


def chapter_order(names=None) -> list:
    """The requested chapters plus everything they depend on: dependencies first, else book order."""
    for name in names or ():
        if name not in CHAPTERS:
            raise RunnerError(f"unknown chapter {name!r}; chapters: {', '.join(CHAPTERS)}")
    order: list = []

    def visit(chapter):
        if chapter not in order:
            for dependency in CHAPTERS[chapter]:
                visit(dependency)
            order.append(chapter)

    for name in [c for c in CHAPTERS if c in set(names or CHAPTERS)]:
        visit(name)
    return order
