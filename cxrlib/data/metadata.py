"""Reading NIH label files, keeping the four single-label classes, and accounting for every row left out."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlib.config import CLASSES
from cxrlib.data.errors import DataError

REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
# Names NIH has used for its label file, newest first; the sample ships labels.csv.
METADATA_NAMES = (
    "Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv", "Data_Entry_2017.csv.gz", "labels.csv",
)
# NIH's fourteen findings and "No Finding": a label outside these is a typo or another data set's name.
NIH_FINDINGS = ("No Finding", "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
DROP_REASONS = ("multi-label", "other finding", "unknown label", "missing image", "unreadable image")
EXAMPLES = 3


def find_metadata(folder: Path) -> Path:
    """Accept any of NIH's label-file names so users need not rename what they downloaded."""
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no NIH label file in {folder}: expected one of {', '.join(METADATA_NAMES)}")


def read_metadata(path: Path) -> pd.DataFrame:
    """Fail with the missing column names rather than a KeyError later, and name any hostile row."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read label file {path}: {err}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"label file {path} lacks the column(s) {', '.join(missing)}; "
                        f"it has {', '.join(map(str, table.columns))}")
    for row, name in enumerate(table["Image Index"], start=1):
        check_image_name(name, where=f"label file {path}, row {row}")
    check_unique_names(table, path)
    check_patient_ids(table, path)
    return table


def check_image_name(name, where: str = "") -> str:
    """An image name is a bare file name: anything that could leave the data folder is refused."""
    prefix = f"{where}: " if where else ""
    if pd.isna(name):
        raise DataError(f"{prefix}no image name (the 'Image Index' cell is empty)")
    text = str(name)
    if not text or text != Path(text).name or text in {".", ".."} or "\\" in text:
        raise DataError(f"{prefix}image name {text!r} is not a plain file name (it could leave the data folder)")
    return text


def check_unique_names(table: pd.DataFrame, path) -> None:
    """Two rows for one image would give it two labels or count it twice: refuse, naming both rows."""
    repeated = table["Image Index"].duplicated(keep=False)
    if repeated.any():
        name = table.loc[repeated, "Image Index"].iloc[0]
        rows = [i + 1 for i in table.index[table["Image Index"] == name]]
        raise DataError(f"label file {path}: image {name!r} is listed in rows {', '.join(map(str, rows))} "
                        f"({int(repeated.sum())} rows repeat an image); each image may appear once")


def check_patient_ids(table: pd.DataFrame, path) -> None:
    """Patient IDs decide the split, so each must be a whole number."""
    numbers = pd.to_numeric(table["Patient ID"], errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"label file {path}, row {row + 1}: Patient ID {table['Patient ID'].iloc[row]!r} is not "
                        f"a whole number ({int(bad.sum())} row(s) like it)")


def label_reason(label) -> str:
    """Why a row's 'Finding Labels' keeps it out of the task ('' when it is one of the four classes)."""
    if pd.isna(label) or not str(label).strip():
        return "unknown label"
    parts = [p.strip() for p in str(label).split("|")]
    if any(p not in NIH_FINDINGS for p in parts):
        return "unknown label"
    if len(parts) > 1:
        return "multi-label"
    return "" if parts[0] in CLASSES else "other finding"


def single_label(table: pd.DataFrame) -> pd.DataFrame:
    """The report's task: images whose only label is exactly one of the four classes."""
    return sort_rows(table)[0]


def sort_rows(table: pd.DataFrame) -> tuple:
    """(rows of the four single-label classes, {reason: image names} of every row left out)."""
    labels = table["Finding Labels"].map(lambda v: v.strip() if isinstance(v, str) else v)
    reasons = labels.map(label_reason)
    keep = table[reasons == ""].copy()
    keep["Finding Labels"] = labels[reasons == ""]
    keep["label"] = keep["Finding Labels"].map({c: i for i, c in enumerate(CLASSES)}).astype(int)
    keep["Patient ID"] = pd.to_numeric(keep["Patient ID"]).astype(int)
    dropped = {r: table.loc[reasons == r, "Image Index"].astype(str).tolist() for r in DROP_REASONS[:3]}
    return keep.reset_index(drop=True), dropped


@dataclass
class DropSummary:
    """Rows read from the label file, rows kept, and the image names of every row left out, by reason."""

    label_file: str
    rows_read: int
    dropped: dict = field(default_factory=dict)  # reason -> list of image names

    @property
    def rows_kept(self) -> int:
        """Rows that made it into the source's table."""
        return self.rows_read - sum(len(v) for v in self.dropped.values())

    def add(self, reason: str, names) -> "DropSummary":
        """A copy with more rows dropped for a reason."""
        if reason not in DROP_REASONS:
            raise ValueError(f"drop reason must be one of {', '.join(DROP_REASONS)}, got {reason!r}")
        dropped = {**self.dropped, reason: [*self.dropped.get(reason, []), *map(str, names)]}
        return DropSummary(self.label_file, self.rows_read, dropped)

    def count(self, reason: str) -> int:
        """Rows dropped for one reason."""
        return len(self.dropped.get(reason, []))

    def table(self, examples: int = EXAMPLES) -> pd.DataFrame:
        """One row per reason with its count and first image names, then the rows kept and read."""
        rows = [{"rows": self.count(r), "first images": _first(self.dropped.get(r, []), examples)}
                for r in DROP_REASONS]
        rows += [{"rows": self.rows_kept, "first images": ""}, {"rows": self.rows_read, "first images": ""}]
        index = pd.Index([f"dropped: {r}" for r in DROP_REASONS] + ["kept", "read"], name=Path(self.label_file).name)
        return pd.DataFrame(rows, index=index)

    def line(self, examples: int = EXAMPLES) -> str:
        """One line for the runner and provenance: read, kept, and each reason with its first names."""
        parts = [f"{self.count(r)} {r} ({_first(self.dropped[r], examples)})" for r in DROP_REASONS
                 if self.count(r)]
        dropped = "; dropped " + ", ".join(parts) if parts else "; nothing dropped"
        return f"{Path(self.label_file).name}: {self.rows_read} rows read, {self.rows_kept} kept{dropped}"

    def __str__(self) -> str:
        return self.line()


def _first(names, examples: int) -> str:
    """The first few names, with an ellipsis when there are more."""
    return ", ".join(names[:examples]) + (", ..." if len(names) > examples else "")


def class_counts(table: pd.DataFrame, column: str = "Finding Labels") -> pd.Series:
    """Counts in the project's class order, zeros included."""
    return table[column].value_counts().reindex(list(CLASSES), fill_value=0)
