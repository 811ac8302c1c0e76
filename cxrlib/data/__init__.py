"""Data: NIH metadata, image sources, patient-disjoint splits, cached images and tf.data pipelines."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrlib.config import CLASSES
from cxrlib.data.errors import DataError
from cxrlib.data.images import load_images
from cxrlib.data.metadata import class_counts, read_metadata, single_label
from cxrlib.data.pipeline import augmentation, make_dataset
from cxrlib.data.sources import SYNTHETIC_WARNING, Source, nih_label_file, resolve_source
from cxrlib.data.splits import (SPLITS, apply_caps, assert_patient_disjoint, limit_per_class,
                                split_counts, split_patients)

__all__ = ["ChestData", "DataError", "Source", "SPLITS", "SYNTHETIC_WARNING", "augmentation",
           "assert_patient_disjoint", "class_counts", "load_data", "make_dataset",
           "nih_label_file", "read_metadata", "single_label", "split_patients"]


@dataclass
class ChestData:
    """A source with its split table; hands out cached image arrays and tf.data pipelines."""

    source: Source
    table: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, in a fixed order that predictions files follow."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.table[self.table["split"] == name].reset_index(drop=True)

    def images(self, name: str, size: int, transform=None) -> np.ndarray:
        """(N, size, size) uint8 for one split, decoded (and transformed) once and cached."""
        rows = self.split(name)
        return load_images([self.source.paths[n] for n in rows["Image Index"]], size, desc=name,
                           transform=transform)

    def labels(self, name: str) -> np.ndarray:
        """Integer labels in CLASSES order."""
        return self.split(name)["label"].to_numpy()

    def dataset(self, name: str, size: int, batch_size: int, shuffle: bool = False, seed: int = 42,
                transform=None):
        """A prefetched tf.data pipeline of (RGB image, label) batches."""
        return make_dataset(self.images(name, size, transform), self.labels(name), batch_size, shuffle, seed)

    def counts(self) -> pd.DataFrame:
        """Images per class and split."""
        return split_counts(self.table)


def load_data(data_dir=None, seed: int = 42, fractions=(0.6, 0.2, 0.2), caps=None,
              training_set: str = "more", max_per_class=None) -> ChestData:
    """Resolve the source, split by patient, then apply the report's caps and any profile limits."""
    source = resolve_source(data_dir)
    table = split_patients(source.table, fractions, seed)
    table = apply_caps(table, caps, seed, training_set)
    table = limit_per_class(table, max_per_class, seed)
    missing = [c for c in CLASSES if not (table["Finding Labels"] == c).any()]
    if missing:
        raise DataError(f"no image of class(es) {', '.join(missing)} in {source.describe()}")
    return ChestData(source, table.reset_index(drop=True))


def overview(data: ChestData, nih_table=None) -> pd.DataFrame:
    """NIH's full counts per class beside the report's and what this run uses.

    'NIH, any label' counts images whose labels include the class; 'NIH, single label' those
    with exactly that label (the report's task).
    """
    from cxrlib.config import REPORT_COUNTS

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
    from cxrlib.config import REPORT_COUNTS

    ours = data.counts()
    report = pd.DataFrame(REPORT_COUNTS).reindex(index=list(CLASSES))
    return pd.concat({"report": report, "ours": ours}, axis=1).swaplevel(axis=1).sort_index(
        axis=1, level=0, key=lambda s: s.map({n: i for i, n in enumerate(SPLITS)}), sort_remaining=False)


def patients_per_split(data: ChestData) -> pd.DataFrame:
    """Images and distinct patients per split: the evidence that the split is by patient."""
    grouped = data.table.groupby("split")
    table = pd.DataFrame({"images": grouped.size(), "patients": grouped["Patient ID"].nunique()})
    return table.reindex(list(SPLITS))
