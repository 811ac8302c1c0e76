"""The data path, one step after another, from load_data:

1. sources: the folder and its label file;
2. metadata: the label file read, each row kept (one of the four classes alone) or dropped with its reason;
3. content: each kept row's image file found, hashed and its header read;
4. splits (cxrlib.science.data.splits): patients dealt to train, val and test, with the caps and limits;
5. images: the images a split uses checked, decoded once and cached, bad ones named or skipped;
6. the splits checked: every class in every split, no patient over its share.

One table carries the image set: a row per kept image with the label file's columns, its label, path, content
hash, native size, problem and split (empty for a row no split uses).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.core.errors import DataError
from cxrlib.machinery.inputs.content import on_disk
from cxrlib.machinery.inputs.decode import DECODE_VERSION
from cxrlib.machinery.inputs.images import first_touch, load_images
from cxrlib.machinery.inputs.metadata import DropSummary, read_labels, read_metadata
from cxrlib.machinery.inputs.sources import SYNTHETIC_WARNING, nih_label_file, resolve_source, where
from cxrlib.science.data.pipeline import make_dataset
from cxrlib.science.data.splits import (SPLITS, apply_caps, check_patient_shares, check_splits, limit_per_class,
                                        limit_per_patient, split_counts, split_patients)

__all__ = ["DECODE_VERSION", "ChestData", "DataError", "SPLITS", "SYNTHETIC_WARNING", "Source", "load_data",
           "load_for", "nih_label_file", "read_metadata", "read_source"]
KIND_TEXT = {"nih": "NIH ChestX-ray14 folder", "sample": "real NIH ChestX-ray14 sample",
             "synthetic": "SYNTHETIC images (not real X-rays)"}
BAD_IMAGE_CHOICES = ("fail", "skip")


@dataclass
class Source:
    """An image set: where it came from, its one table (a row per kept image) and what its label file lost."""

    kind: str
    root: Path
    label_file: Path
    table: pd.DataFrame = field(repr=False)
    drops: DropSummary = field(repr=False)

    @property
    def synthetic(self) -> bool:
        """Pages and outputs must say so loudly when this is true."""
        return self.kind == "synthetic"

    def describe(self) -> str:
        """One phrase for provenance lines."""
        skipped = self.drops.count("unreadable image")
        extra = f"; {skipped} unreadable image(s) skipped" if skipped else ""
        return f"{KIND_TEXT[self.kind]} {where(self.root)} ({len(self.table)} single-label images{extra})"

    def fingerprint(self) -> str:
        """Changes whenever the images (by content) or labels a run would use change."""
        digest = hashlib.sha256(self.kind.encode())
        for name, label, sha in zip(self.table["Image Index"], self.table["label"], self.table["sha256"]):
            digest.update(f"{name}:{label}:{sha};".encode())
        return digest.hexdigest()[:16]

    def paths(self, ids) -> list:
        """The image files of these image ids, in order."""
        return self.table.set_index("Image Index").loc[list(ids), "path"].tolist()


@dataclass
class ChestData:
    """An image set with its splits; hands out cached image arrays and tf.data pipelines.

    harmonise_to: every larger image is first brought down to this many pixels a side (None: off).
    """

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

    def dataset(self, name: str, size: int, batch_size: int, shuffle: bool = False, seed: int = 42,
                transform=None, start_epoch: int = 0):
        """A prefetched tf.data pipeline of (grey uint8 image, label) batches; shuffled, endless from start_epoch."""
        return make_dataset(self.images(name, size, transform), self.labels(name), batch_size, shuffle, seed,
                            start_epoch=start_epoch)

    def counts(self) -> pd.DataFrame:
        """Images per class and split."""
        return split_counts(self.table)


def read_source(data_dir=None) -> Source:
    """Steps 1 to 3: the folder and its label file, the rows kept and dropped, and each kept image's file."""
    place = resolve_source(data_dir)
    table, drops = read_labels(place.label_file)
    table, drops = on_disk(table, place, drops)
    return Source(*place, table, drops)


def load_data(data_dir=None, seed: int = 42, fractions=(0.6, 0.2, 0.2), caps=None,
              training_set: str = "more", max_per_class=None, *, harmonise_resolution: bool = False,
              on_bad_image: str = "fail", min_per_split: int = 1, image_size=None, max_per_patient=None,
              max_patient_share=None) -> ChestData:
    """The data path, steps 1 to 6 (see the module's docstring).

    harmonise_resolution: when the images used mix native sizes, bring every image down to the smallest
    first, so resolution cannot tell the classes apart. max_per_patient: at most this many images of one
    patient; max_patient_share: the largest share of a class's validation or test images one patient may
    supply. on_bad_image: "fail" names every unusable
    image in one error, "skip" leaves them out (counted in the drop summary). min_per_split: the
    fewest images of each class every split must hold. image_size: the size the caller will ask
    for; an image never decoded before is checked and resized to it in one decode, and cached.
    """
    if on_bad_image not in BAD_IMAGE_CHOICES:
        raise ValueError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_CHOICES)}, got {on_bad_image!r}")
    source = read_source(data_dir)
    chosen = split_patients(limit_per_patient(source.table, max_per_patient, seed), fractions, seed)
    chosen = limit_per_class(apply_caps(chosen, caps, seed, training_set), max_per_class, seed)
    table = source.table.assign(split=chosen["split"])
    table, drops, harmonise_to = first_touch(table, source.drops, source.root, on_bad_image, image_size,
                                             harmonise_resolution)
    data = ChestData(replace(source, table=table, drops=drops), harmonise_to)
    missing = [c for c in CLASSES if not (data.table["Finding Labels"] == c).any()]
    if missing:
        raise DataError(f"no image of class(es) {', '.join(missing)} in {data.source.describe()}")
    check_splits(data.table, min_per_split, data.source.describe())
    check_patient_shares(data.table, max_patient_share, data.source.describe())
    return data


def load_for(data_dir, settings: dict) -> ChestData:
    """load_data with a chapter's resolved settings, as the chapter and the runner both call it."""
    return load_data(data_dir, settings["seed"], tuple(settings["fractions"]), settings["caps"],
                     settings["training_set"], settings["max_per_class"],
                     harmonise_resolution=settings["harmonise_resolution"], on_bad_image=settings["on_bad_image"],
                     min_per_split=settings["min_per_split"], image_size=settings.get("image_size"),
                     max_per_patient=settings.get("max_per_patient"), max_patient_share=settings.get("max_patient_share"))
