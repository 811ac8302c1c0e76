"""The data path, one step after another, from load_data:

1. sources: the folder, its label file, and each row kept (one of the four classes alone) or dropped with its reason;
2. images (on_disk): each kept row's image file found, hashed, and its header read;
3. splits (cxrlib.science.data.splits): patients dealt to train, val and test, with the caps and limits;
4. images (first_touch): the images a split uses checked, decoded once and cached, bad ones named or skipped;
5. the splits checked: every class in every split (how many images one patient supplies: the pages say).

One table (Source.table) carries the image set: a row per kept image with the label file's columns, its label,
path, content hash, native size, problem and split (empty for a row no split uses).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cxrlib.core.errors import DataError
from cxrlib.machinery.inputs.decode import DECODE_VERSION
from cxrlib.machinery.inputs.images import first_touch, load_images, on_disk
from cxrlib.machinery.inputs.sources import Source, nih_label_file, read_labels, read_metadata, resolve_source
from cxrlib.present.dataset import SYNTHETIC_WARNING, DropSummary
from cxrlib.core.manifest import check
from cxrlib.science.data.splits import (SPLITS, apply_caps, check_splits, limit_per_class, limit_per_patient,
                                        split_counts, split_patients)

__all__ = ["DECODE_VERSION", "ChestData", "DataError", "SPLITS", "SYNTHETIC_WARNING", "Source", "load_data",
           "load_for", "nih_label_file", "read_metadata", "read_source"]


@dataclass
class ChestData:
    """An image set with its splits; hands out its cached image arrays and labels. harmonise_to: every larger
    image is first brought down to this many pixels a side (None: off)."""

    source: Source
    harmonise_to: int | None = None

    @property
    def drops(self) -> DropSummary:
        """Rows read, kept and left out (by reason) of the source's label file."""
        return self.source.drops

    @property
    def table(self) -> pd.DataFrame:
        """The rows a split uses, in the label file's order."""
        rows = self.source.table
        return rows[rows["split"].notna()].reset_index(drop=True)

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, in a fixed order that predictions files follow."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        table = self.table
        return table[table["split"] == name].reset_index(drop=True)

    def images(self, name: str, size: int, transform=None) -> np.ndarray:
        """(N, size, size) uint8 for one split, decoded (and transformed) once and cached."""
        return self.images_of(self.split(name)["Image Index"], size, transform, desc=name)

    def images_of(self, ids, size: int, transform=None, desc: str = "decoding") -> np.ndarray:
        """(N, size, size) uint8 for these image ids, decoded exactly as the models see them."""
        return load_images(self.source.paths(ids), size, desc=desc, transform=transform,
                           harmonise_to=self.harmonise_to)

    def labels(self, name: str) -> np.ndarray:
        """Integer labels in CLASSES order."""
        return self.split(name)["label"].to_numpy()

    def counts(self) -> pd.DataFrame:
        """Images per class and split."""
        return split_counts(self.table)


def read_source(data_dir=None) -> Source:
    """Steps 1 and 2: the folder and its label file, the rows kept and dropped, and each kept image's file."""
    source = resolve_source(data_dir)
    table, drops = read_labels(source.label_file)
    table, drops = on_disk(table, source, drops)
    return replace(source, table=table, drops=drops)


def load_data(data_dir=None, seed: int = 42, fractions=(0.6, 0.2, 0.2), caps=None,
              training_set: str = "more", max_per_class=None, *, harmonise_resolution: bool = False,
              on_bad_image: str = "fail", min_per_split: int = 1, image_size=None, max_per_patient=None) -> ChestData:
    """The data path, steps 1 to 5 (see the module's docstring). harmonise_resolution: bring every image first
    down to the smallest native size used, so resolution cannot tell the classes apart. max_per_patient: at most
    this many images of one patient.
    on_bad_image: "fail" names every unusable image in one error, "skip" leaves them out (counted in the drop
    summary). min_per_split: the fewest images of each class every split must hold. image_size: the size the
    caller will ask for (an image never decoded is checked and resized to it in one decode, and cached)."""
    on_bad_image = check("on_bad_image", on_bad_image)  # a library caller's value, checked as the runner's
    source = read_source(data_dir)
    chosen = split_patients(limit_per_patient(source.table, max_per_patient, seed), fractions, seed)
    chosen = limit_per_class(apply_caps(chosen, caps, seed, training_set), max_per_class, seed)
    table, drops, harmonise_to = first_touch(source.table.assign(split=chosen["split"]), source.drops,
                                             source.root, on_bad_image, image_size, harmonise_resolution)
    data = ChestData(replace(source, table=table, drops=drops), harmonise_to)
    check_splits(data.table, min_per_split, data.source.describe())
    return data


def load_for(data_dir, settings: dict) -> ChestData:
    """load_data with a chapter's resolved settings, as the chapter and the runner both call it."""
    return load_data(data_dir, settings["seed"], tuple(settings["fractions"]), settings["caps"],
                     settings["training_set"], settings["max_per_class"],
                     harmonise_resolution=settings["harmonise_resolution"], on_bad_image=settings["on_bad_image"],
                     min_per_split=settings["min_per_split"], image_size=settings.get("image_size"),
                     max_per_patient=settings.get("max_per_patient"))
