"""How the data are shown: the dataset chapter's tables (computed from a ChestData's one table), the label file's
drop summary, the phrase naming a source in provenance lines and the synthetic-data warning."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from cxrlib.core.config import CLASSES, REPO_ROOT, REPORT_COUNTS
from cxrlib.science.data.splits import SPLITS

SYNTHETIC_WARNING = ("SYNTHETIC DATA: this run was asked for synthetic images (DATA=synthetic), so every "
                     "number and picture here comes from procedurally generated images. They "
                     "say nothing about chest X-ray classification.")
KIND_TEXT = {"nih": "NIH ChestX-ray14 folder", "sample": "real NIH ChestX-ray14 sample",
             "synthetic": "SYNTHETIC images (not real X-rays)"}
DROP_REASONS = ("multi-label", "other finding", "unknown label", "missing image", "unreadable image")
EXAMPLES = 3
# Distinct unknown label values the summary line shows, most frequent first.
VALUES_SHOWN = 5


@dataclass
class DropSummary:
    """Rows read from the label file, rows kept, and the image names of every row left out, by reason.

    Also what the reader did to the labels: the unknown values with their rows (and NIH's spelling where only
    case differs), how many labels had stray spaces trimmed (case is never changed) and the file's text encoding.
    """

    label_file: str
    rows_read: int
    dropped: dict = field(default_factory=dict)  # reason -> list of image names
    encoding: str = "UTF-8"
    unknown_values: dict = field(default_factory=dict)  # label as written -> rows
    trimmed: int = 0  # labels with stray spaces trimmed before matching
    spellings: dict = field(default_factory=dict)  # unknown label -> NIH's spelling, where only case differs

    @property
    def rows_kept(self) -> int:
        """Rows that made it into the source's table."""
        return self.rows_read - sum(len(v) for v in self.dropped.values())

    def add(self, reason: str, names) -> "DropSummary":
        """A copy with more rows dropped for a reason."""
        if reason not in DROP_REASONS:
            raise ValueError(f"drop reason must be one of {', '.join(DROP_REASONS)}, got {reason!r}")
        dropped = {**self.dropped, reason: [*self.dropped.get(reason, []), *map(str, names)]}
        return replace(self, dropped=dropped)

    def count(self, reason: str) -> int:
        """Rows dropped for one reason."""
        return len(self.dropped.get(reason, []))

    def values(self) -> str:
        """The unknown label values as the summary shows them: 'Infiltrate' ×2, ' effusion ' ×1, ..."""
        items = [shown_value(v, n, self.spellings.get(v, "")) for v, n in self.unknown_values.items()]
        more = len(items) - VALUES_SHOWN
        return ", ".join(items[:VALUES_SHOWN]) + (f", ... ({more} more values)" if more > 0 else "")

    def table(self) -> pd.DataFrame:
        """One row per reason with its count and first image names (and the unknown values), then kept and read."""
        rows = [{"rows": self.count(r), "first images": first(self.dropped.get(r, [])),
                 "values": self.values() if r == "unknown label" else ""} for r in DROP_REASONS]
        rows += [{"rows": count, "first images": "", "values": ""} for count in (self.rows_kept, self.rows_read)]
        name = Path(self.label_file).name + ("" if self.encoding == "UTF-8" else f" (read as {self.encoding})")
        index = pd.Index([f"dropped: {r}" for r in DROP_REASONS] + ["kept", "read"], name=name)
        return pd.DataFrame(rows, index=index)

    def line(self) -> str:
        """One line for the runner and provenance: read, kept, dropped by reason, unknown values, labels' treatment."""
        parts = [f"{self.count(r)} {r} ({first(self.dropped[r])})" for r in DROP_REASONS if self.count(r)]
        dropped = "; dropped " + ", ".join(parts) if parts else "; nothing dropped"
        notes = [f"unknown label: {self.values()}"] if self.unknown_values else []
        if self.unknown_values or self.trimmed:  # what was done to the labels before matching them to NIH's
            notes.append(f"labels matched after trimming stray spaces ({self.trimmed} trimmed), case not changed")
        notes += [f"read as {self.encoding}, not UTF-8"] if self.encoding != "UTF-8" else []
        return (f"{Path(self.label_file).name}: {self.rows_read} rows read, {self.rows_kept} kept{dropped}"
                + "".join(f"; {n}" for n in notes))

    __str__ = line


def shown_value(value: str, count: int, spelling: str = "") -> str:
    """One unknown label: quoted (stray spaces show), its rows, NIH's spelling if only case differs."""
    text = f"{value!r} ×{count}" if value.strip() else f"(empty) ×{count}"
    return f"{text} (NIH spells it {spelling!r})" if spelling else text


def first(names) -> str:
    """The first few names, with an ellipsis when there are more."""
    return ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")


def source_phrase(kind: str, root: Path, images: int, skipped: int = 0) -> str:
    """One phrase for provenance lines: 'real NIH ChestX-ray14 sample shipped with the project in data/...'."""
    extra = f"; {skipped} unreadable image(s) skipped" if skipped else ""
    return f"{KIND_TEXT[kind]} {where(root)} ({images} single-label images{extra})"


def where(root: Path) -> str:
    """'shipped with the project in data/cxr14-sample' for the project's own data, else 'at /the/folder'."""
    try:
        inside = Path(root).resolve().relative_to(REPO_ROOT / "data")
    except ValueError:
        return f"at {root}"
    return f"shipped with the project in data/{inside.as_posix()}"


def class_counts(table: pd.DataFrame) -> pd.Series:
    """Images per class in the project's class order, zeros included."""
    return table["Finding Labels"].value_counts().reindex(list(CLASSES), fill_value=0)


def overview(data, nih_table=None) -> pd.DataFrame:
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


NO_NIH_FILE = "NIH's full label file was not found (set CXR_NIH_METADATA); showing only the data used."


def nih_overview(data, nih_table=None) -> pd.DataFrame:
    """overview, saying first (NO_NIH_FILE) where NIH's full label file was not found (nih_table None)."""
    if nih_table is None:
        print(NO_NIH_FILE)
    return overview(data, nih_table)


def found_sizes(data, classes: list) -> pd.DataFrame:
    """Images per size of the copy the source took them from and class (`classes` order), or a note if unrecorded."""
    if "orig_width" not in data.table:
        return pd.DataFrame({"note": ["the source does not record the size of the copies it was taken from"]})
    found = data.table.groupby(["orig_width", "Finding Labels"]).size().unstack(fill_value=0)
    found = found.reindex(columns=classes, fill_value=0)
    found.index.name = "size of the copy found (px)"
    return found


def report_split_comparison(data) -> pd.DataFrame:
    """Our images per class and split next to the report's section 1.2 counts."""
    ours = data.counts()
    report = pd.DataFrame(REPORT_COUNTS).reindex(index=list(CLASSES))
    return pd.concat({"report": report, "ours": ours}, axis=1).swaplevel(axis=1).sort_index(
        axis=1, level=0, key=lambda s: s.map({n: i for i, n in enumerate(SPLITS)}), sort_remaining=False)


def patients_per_split(data) -> pd.DataFrame:
    """Images and distinct patients per split: the evidence that the split is by patient."""
    grouped = data.table.groupby("split")
    table = pd.DataFrame({"images": grouped.size(), "patients": grouped["Patient ID"].nunique()})
    return table.reindex(list(SPLITS))


def native_sizes(data) -> pd.Series:
    """Each used image's native size in pixels: its shorter side as stored."""
    return data.table[["width", "height"]].min(axis=1).astype(int)


def native_resolution(data) -> pd.DataFrame:
    """Images per native size (stored pixels a side) and class, with each class's share; the leak to watch."""
    counts = pd.crosstab(native_sizes(data).rename("native size (px)"), data.table["Finding Labels"].rename("class"))
    counts = counts.reindex(columns=list(CLASSES), fill_value=0)
    shares = (counts / counts.sum()).round(3)
    return pd.concat({"images": counts, "share of class": shares}, axis=1)


def pipeline_resolution(data) -> str:
    """One sentence on what resolution the models see, for the dataset chapter and provenance."""
    sizes = sorted(set(native_sizes(data)))
    if len(sizes) == 1:
        return f"every image is stored at {sizes[0]} px, so resolution cannot tell the classes apart"
    native = f"native sizes {', '.join(map(str, sizes))} px"
    if data.harmonise_to:
        return (f"{native}; every image is first brought down to {data.harmonise_to} px (harmonise_resolution), "
                "so resolution cannot tell the classes apart")
    return (f"{native}, kept as they are (harmonise_resolution off): if the classes differ in native size, a model "
            "can use sharpness as a label")
