"""Data: NIH metadata, image sources, patient-disjoint splits, cached images and tf.data pipelines."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, REPORT_COUNTS
from cxrlib.core.errors import DataError
from cxrlib.machinery.inputs.content import record_problems
from cxrlib.machinery.inputs.images import check_images, first_decode, load_images
from cxrlib.machinery.inputs.metadata import DropSummary, class_counts, read_metadata, single_label
from cxrlib.machinery.inputs.sources import SYNTHETIC_WARNING, Source, handle_bad_images, nih_label_file, resolve_source
from cxrlib.science.data.pipeline import make_dataset
from cxrlib.science.data.splits import (SPLITS, apply_caps, assert_patient_disjoint, check_splits, limit_per_class,
                                        limit_per_patient, split_counts, split_patients)

__all__ = ["ChestData", "DataError", "DropSummary", "Source", "SPLITS", "SYNTHETIC_WARNING",
           "assert_patient_disjoint", "class_counts", "load_data", "load_for",
           "make_dataset", "native_resolution", "nih_label_file", "read_metadata", "single_label",
           "split_patients"]


@dataclass
class ChestData:
    """A source with its split table; hands out cached image arrays and tf.data pipelines.

    harmonise_to: every larger image is first brought down to this many pixels a side (None: off).
    """

    source: Source
    table: pd.DataFrame
    harmonise_to: int | None = None

    @property
    def drops(self) -> DropSummary:
        """Rows read, kept and left out (by reason) of the source's label file."""
        return self.source.drops

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, in a fixed order that predictions files follow."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.table[self.table["split"] == name].reset_index(drop=True)

    def images(self, name: str, size: int, transform=None) -> np.ndarray:
        """(N, size, size) uint8 for one split, decoded (and transformed) once and cached."""
        return self.images_of(self.split(name)["Image Index"], size, transform, desc=name)

    def images_of(self, ids, size: int, transform=None, desc: str = "decoding") -> np.ndarray:
        """(N, size, size) uint8 for these image ids, decoded exactly as the models see them."""
        return load_images([self.source.paths[n] for n in ids], size, desc=desc, transform=transform,
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


def load_data(data_dir=None, seed: int = 42, fractions=(0.6, 0.2, 0.2), caps=None,
              training_set: str = "more", max_per_class=None, *, harmonise_resolution: bool = False,
              on_bad_image: str = "fail", min_per_split: int = 1, image_size=None, max_per_patient=None) -> ChestData:
    """Resolve the source, split by patient, apply the report's caps and any profile limits, check the images
    the splits use, then check the splits.

    harmonise_resolution: when the images used mix native sizes, bring every image down to the smallest
    first, so resolution cannot tell the classes apart. max_per_patient: at most this many images of one
    patient. on_bad_image: "fail" names every unusable
    image in one error, "skip" leaves them out (counted in the drop summary). min_per_split: the
    fewest images of each class every split must hold. image_size: the size the caller will ask
    for; an image never decoded before is checked and resized to it in one decode, and cached.
    """
    source = resolve_source(data_dir, on_bad_image=on_bad_image)
    table = split_patients(limit_per_patient(source.table, max_per_patient, seed), fractions, seed)
    table = apply_caps(table, caps, seed, training_set)
    table = limit_per_class(table, max_per_class, seed)
    source, table, harmonise_to = check_used_images(source, table, on_bad_image, image_size,
                                                    harmonise_resolution)
    missing = [c for c in CLASSES if not (table["Finding Labels"] == c).any()]
    if missing:
        raise DataError(f"no image of class(es) {', '.join(missing)} in {source.describe()}")
    check_splits(table, min_per_split, source.describe())
    return ChestData(source, table.reset_index(drop=True), harmonise_to)


def check_used_images(source: Source, table: pd.DataFrame, on_bad_image: str, size=None,
                      harmonise: bool = False) -> tuple:
    """(source, table, harmonise_to) once every image the splits use is known to be usable, before any training.

    Images not decoded before are decoded once here (checked and, with a size, resized and cached in the same
    decode); images no split uses are not decoded. Bad images fail in one error or, with on_bad_image="skip",
    leave their split and are counted in the source's drop summary.
    """
    files = source.files.loc[table["Image Index"]].copy()
    harmonise_to = smallest_size(files) if harmonise else None
    if files["problem"].isna().any():
        found = first_touch(source, table, files, size, harmonise_to)
        files.loc[found.index, "problem"] = found
    kept, drops = handle_bad_images(table, files, source.drops, on_bad_image, source.root)
    if len(kept) == len(table):
        return source, table, harmonise_to
    left = source.table[~source.table["Image Index"].isin(files.index[files["problem"] != ""])]
    source = replace(source, table=left.reset_index(drop=True), drops=drops,
                     paths={n: source.paths[n] for n in left["Image Index"]})
    good = files.loc[kept["Image Index"]]
    return source, kept, smallest_size(good) if harmonise else None


def first_touch(source: Source, table: pd.DataFrame, files: pd.DataFrame, size, harmonise_to) -> pd.Series:
    """The problem ('' when usable) of each image decoded now, by name, stored in the content index.

    With a size, each split holding an image never decoded is decoded once and cached at that size;
    without, only those images are decoded, to be checked.
    """
    known_bad = files["problem"].notna() & (files["problem"] != "")
    if size is None:
        names = files.index[files["problem"].isna()].tolist()
        problems = check_images([source.paths[n] for n in names])
    else:
        names, problems = [], []
        for split in SPLITS:
            part = [n for n in table.loc[table["split"] == split, "Image Index"] if not known_bad[n]]
            if files.loc[part, "problem"].isna().any():
                names += part
                problems += first_decode([source.paths[n] for n in part], size, harmonise_to, desc=split)
    record_problems([source.paths[n] for n in names], problems)
    return pd.Series(problems, index=names, dtype=object)


def smallest_size(files: pd.DataFrame):
    """The native size (shorter side) every image is brought down to when harmonising; None when all agree.

    Images already known to be unusable do not count.
    """
    usable = files[files["problem"].isna() | (files["problem"] == "")]
    sizes = usable[["width", "height"]].min(axis=1)
    return int(sizes.min()) if sizes.nunique() > 1 else None


def native_resolution(data: ChestData) -> pd.DataFrame:
    """Images per native size (stored pixels a side) and class, with each class's share; the leak to watch."""
    sizes = data.source.native_sizes().loc[data.table["Image Index"]].to_numpy()
    counts = pd.crosstab(pd.Series(sizes, name="native size (px)"),
                         pd.Series(data.table["Finding Labels"].to_numpy(), name="class"))
    counts = counts.reindex(columns=list(CLASSES), fill_value=0)
    shares = (counts / counts.sum()).round(3)
    return pd.concat({"images": counts, "share of class": shares}, axis=1)


def pipeline_resolution(data: ChestData) -> str:
    """One sentence on what resolution the models see, for the dataset chapter and provenance."""
    sizes = sorted(set(data.source.native_sizes().loc[data.table["Image Index"]]))
    if len(sizes) == 1:
        return f"every image is stored at {sizes[0]} px, so resolution cannot tell the classes apart"
    if data.harmonise_to:
        return (f"native sizes {', '.join(map(str, sizes))} px; every image is first brought down to "
                f"{data.harmonise_to} px (harmonise_resolution), so resolution cannot tell the classes apart")
    return (f"native sizes {', '.join(map(str, sizes))} px, kept as they are (harmonise_resolution off): "
            f"if the classes differ in native size, a model can use sharpness as a label")


def load_for(data_dir, settings: dict) -> ChestData:
    """load_data with a chapter's resolved settings, as the chapter and the runner both call it."""
    return load_data(data_dir, settings["seed"], tuple(settings["fractions"]), settings["caps"],
                     settings["training_set"], settings["max_per_class"],
                     harmonise_resolution=settings["harmonise_resolution"], on_bad_image=settings["on_bad_image"],
                     min_per_split=settings["min_per_split"], image_size=settings.get("image_size"),
                     max_per_patient=settings.get("max_per_patient"))


def overview(data: ChestData, nih_table=None) -> pd.DataFrame:
    """NIH's full counts per class beside the report's and what this run uses.

    'NIH, any label' counts images whose labels include the class; 'NIH, single label' those
    with exactly that label (the report's task).
    """
    columns = {}
    if nih_table is not None:
        labels = nih_table["Finding Labels"].str.split("|")
        columns["NIH, any label"] = [int(labels.apply(lambda ls, c=c: c in ls).sum()) for c in CLASSES]
        columns["NIH, single label"] = class_counts(nih_table).tolist()
    columns["report (train+val+test)"] = [sum(REPORT_COUNTS[s][c] for s in SPLITS) for c in CLASSES]
    columns["used here"] = class_counts(data.table).tolist()
    table = pd.DataFrame(columns, index=pd.Index(CLASSES, name="class"))
    table.loc["total"] = table.sum()
    return table


def report_split_comparison(data: ChestData) -> pd.DataFrame:
    """Our images per class and split next to the report's section 1.2 counts."""
    ours = data.counts()
    report = pd.DataFrame(REPORT_COUNTS).reindex(index=list(CLASSES))
    return pd.concat({"report": report, "ours": ours}, axis=1).swaplevel(axis=1).sort_index(
        axis=1, level=0, key=lambda s: s.map({n: i for i, n in enumerate(SPLITS)}), sort_remaining=False)


def patients_per_split(data: ChestData) -> pd.DataFrame:
    """Images and distinct patients per split: the evidence that the split is by patient."""
    grouped = data.table.groupby("split")
    table = pd.DataFrame({"images": grouped.size(), "patients": grouped["Patient ID"].nunique()})
    return table.reindex(list(SPLITS))
