"""Reading NIH label files, keeping the four single-label classes, and accounting for every row left out."""
from __future__ import annotations

import gzip
import io
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.core.errors import DataError

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
# Distinct unknown label values the summary line shows, most frequent first.
VALUES_SHOWN = 5
# Characters no label file holds as text: what a UTF-16 file or a binary file looks like when read as 8-bit text.
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def find_metadata(folder: Path) -> Path:
    """Accept any of NIH's label-file names so users need not rename what they downloaded."""
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no NIH label file in {folder}: expected one of {', '.join(METADATA_NAMES)}")


def read_metadata(path: Path) -> pd.DataFrame:
    """Fail with the missing column names rather than a KeyError later, and name any hostile row.

    The text encoding used (see label_text) is in the table's attrs["encoding"].
    """
    text, encoding = label_text(path)
    try:
        table = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError as err:
        raise DataError(f"label file {path} is empty; it needs a header row with "
                        f"{', '.join(REQUIRED_COLUMNS)}") from err
    except pd.errors.ParserError as err:
        raise DataError(f"cannot read label file {path}: {' '.join(str(err).split())}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"label file {path} lacks the column(s) {', '.join(missing)}; "
                        f"it has {', '.join(map(str, table.columns))}")
    for row, name in enumerate(table["Image Index"], start=1):
        check_image_name(name, f"label file {path}, row {row}")
    check_unique_names(table, path)
    check_patient_ids(table, path)
    table.attrs["encoding"] = encoding
    return table


def label_bytes(path: Path) -> bytes:
    """The label file's bytes, unpacked when NIH's .gz name says so."""
    try:
        data = Path(path).read_bytes()
        return gzip.decompress(data) if str(path).endswith(".gz") else data
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read label file {path}: {getattr(err, 'strerror', None) or err}") from err


def label_text(path: Path) -> tuple:
    """(text, encoding) of a label file: UTF-8 (a BOM allowed), else Windows-1252 or Latin-1, as spreadsheets save.

    Windows-1252 and Latin-1 differ only in bytes 0x80-0x9F: a file without them is named Latin-1 (both read it
    alike). A file that is text in none of these (UTF-16, a binary file) is refused with the line and what to do.
    """
    data = label_bytes(path)
    try:
        text, encoding = data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
            encoding = "Windows-1252" if re.search(rb"[\x80-\x9f]", data) else "Latin-1"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "Latin-1"
    odd = NOT_TEXT.search(text)
    if odd:
        line = text.count("\n", 0, odd.start()) + 1
        raise DataError(f"label file {path}, line {line}: character {odd.group()!r} is not text in UTF-8, "
                        f"Windows-1252 or Latin-1 (a UTF-16 or binary file?); save the file as UTF-8 (CSV UTF-8)")
    return text, encoding


def check_image_name(name, where: str) -> None:
    """An image name is a bare file name: anything that could leave the data folder is refused."""
    if pd.isna(name):
        raise DataError(f"{where}: no image name (the 'Image Index' cell is empty)")
    text = str(name)
    if not text or text != Path(text).name or text in {".", ".."} or "\\" in text:
        raise DataError(f"{where}: image name {text!r} is not a plain file name (it could leave the data folder)")


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


def normalised(label) -> str:
    """A label with stray spaces trimmed around it and around each '|'-separated part; case is kept."""
    return "|".join(p.strip() for p in str(label).split("|"))


def label_reason(label) -> str:
    """Why a row's 'Finding Labels' keeps it out of the task ('' when it is one of the four classes)."""
    if pd.isna(label) or not str(label).strip():
        return "unknown label"
    parts = normalised(label).split("|")
    if any(p not in NIH_FINDINGS for p in parts):
        return "unknown label"
    if len(parts) > 1:
        return "multi-label"
    return "" if parts[0] in CLASSES else "other finding"


def single_label(table: pd.DataFrame) -> pd.DataFrame:
    """The report's task: images whose only label is exactly one of the four classes."""
    return split_rows(table, table["Finding Labels"].map(label_reason))[0]


def split_rows(table: pd.DataFrame, reasons: pd.Series) -> tuple:
    """(rows of the four single-label classes, {reason: image names} of every row left out), each row's reason
    (label_reason) given."""
    labels = table["Finding Labels"].map(lambda v: v.strip() if isinstance(v, str) else v)
    keep = table[reasons == ""].copy()
    keep["Finding Labels"] = labels[reasons == ""]
    keep["label"] = keep["Finding Labels"].map({c: i for i, c in enumerate(CLASSES)}).astype(int)
    keep["Patient ID"] = pd.to_numeric(keep["Patient ID"]).astype(int)
    dropped = {r: table.loc[reasons == r, "Image Index"].astype(str).tolist() for r in DROP_REASONS[:3]}
    return keep.reset_index(drop=True), dropped


def read_labels(path: Path) -> tuple:
    """(the four single-label classes, DropSummary) of a label file: every row left out, the unknown label
    values with their counts, how labels were normalised and the text encoding."""
    raw = read_metadata(path)
    reasons = raw["Finding Labels"].map(label_reason)
    table, dropped = split_rows(raw, reasons)
    labels = raw["Finding Labels"]
    trimmed = int(sum(isinstance(v, str) and normalised(v) != v for v in labels))
    drops = DropSummary(str(path), len(raw), dropped, encoding=raw.attrs.get("encoding", "UTF-8"),
                        unknown_values=unknown_values(labels[reasons == "unknown label"]), trimmed=trimmed)
    return table, drops


def unknown_values(labels) -> dict:
    """Each unknown label exactly as written ('' for an empty cell) -> rows, most frequent first."""
    return dict(Counter("" if pd.isna(v) else str(v) for v in labels).most_common())


def nih_spelling(value: str) -> str:
    """NIH's spelling of a label that differs from it only in case (stray spaces aside), else ''."""
    by_lower = {f.lower(): f for f in NIH_FINDINGS}
    parts = [by_lower.get(p.lower()) for p in normalised(value).split("|")]
    return "|".join(parts) if all(parts) else ""


def shown_value(value: str, count: int) -> str:
    """One unknown label as the summary shows it: quoted (stray spaces show), its rows, NIH's spelling if only
    case differs."""
    text = f"{value!r} ×{count}" if value.strip() else f"(empty) ×{count}"
    spelling = nih_spelling(value) if value.strip() else ""
    return f"{text} (NIH spells it {spelling!r})" if spelling else text


@dataclass
class DropSummary:
    """Rows read from the label file, rows kept, and the image names of every row left out, by reason.

    Also what the reader did to the labels: the unknown values with their rows, how many labels had stray
    spaces trimmed (case is never changed) and the text encoding the file was read in.
    """

    label_file: str
    rows_read: int
    dropped: dict = field(default_factory=dict)  # reason -> list of image names
    encoding: str = "UTF-8"
    unknown_values: dict = field(default_factory=dict)  # label as written -> rows
    trimmed: int = 0  # labels with stray spaces trimmed before matching

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
        items = [shown_value(v, n) for v, n in self.unknown_values.items()]
        more = len(items) - VALUES_SHOWN
        return ", ".join(items[:VALUES_SHOWN]) + (f", ... ({more} more values)" if more > 0 else "")

    def table(self) -> pd.DataFrame:
        """One row per reason with its count and first image names (and the unknown values), then kept and read."""
        rows = [{"rows": self.count(r), "first images": _first(self.dropped.get(r, [])),
                 "values": self.values() if r == "unknown label" else ""} for r in DROP_REASONS]
        rows += [{"rows": self.rows_kept, "first images": "", "values": ""},
                 {"rows": self.rows_read, "first images": "", "values": ""}]
        name = Path(self.label_file).name + ("" if self.encoding == "UTF-8" else f" (read as {self.encoding})")
        index = pd.Index([f"dropped: {r}" for r in DROP_REASONS] + ["kept", "read"], name=name)
        return pd.DataFrame(rows, index=index)

    def line(self) -> str:
        """One line for the runner and provenance: read, kept, each reason with its first names, the unknown
        values, how labels were normalised and (when not UTF-8) the encoding."""
        parts = [f"{self.count(r)} {r} ({_first(self.dropped[r])})" for r in DROP_REASONS if self.count(r)]
        dropped = "; dropped " + ", ".join(parts) if parts else "; nothing dropped"
        notes = [f"unknown label: {self.values()}"] if self.unknown_values else []
        if self.unknown_values or self.trimmed:  # what was done to the labels before matching them to NIH's
            notes.append(f"labels matched after trimming stray spaces ({self.trimmed} trimmed), case not changed")
        notes += [f"read as {self.encoding}, not UTF-8"] if self.encoding != "UTF-8" else []
        return (f"{Path(self.label_file).name}: {self.rows_read} rows read, {self.rows_kept} kept{dropped}"
                + "".join(f"; {n}" for n in notes))

    def __str__(self) -> str:
        return self.line()


def _first(names) -> str:
    """The first few names, with an ellipsis when there are more."""
    return ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")


def class_counts(table: pd.DataFrame, column: str = "Finding Labels") -> pd.Series:
    """Counts in the project's class order, zeros included."""
    return table[column].value_counts().reindex(list(CLASSES), fill_value=0)
