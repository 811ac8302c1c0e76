"""Step 2 of the data path: the label file read, and each row kept (one of the four classes alone) or dropped
with its reason."""
from __future__ import annotations

import gzip
import io
import re
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.core.errors import DataError
from cxrlib.present.dataset import DROP_REASONS, DropSummary

REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
# NIH's fourteen findings and "No Finding": a label outside these is a typo or another data set's name.
NIH_FINDINGS = ("No Finding", "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
# Characters no label file holds as text: what a UTF-16 file or a binary file looks like when read as 8-bit text.
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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


def read_labels(path: Path) -> tuple:
    """(the rows of the four single-label classes, DropSummary): every row left out with its reason, the unknown
    label values with their counts, how labels were normalised and the text encoding."""
    raw = read_metadata(path)
    labels, reasons = raw["Finding Labels"], raw["Finding Labels"].map(label_reason)
    kept = raw[reasons == ""].assign(**{"Finding Labels": labels[reasons == ""].map(str.strip)})
    kept["label"] = kept["Finding Labels"].map({c: i for i, c in enumerate(CLASSES)}).astype(int)
    kept["Patient ID"] = pd.to_numeric(kept["Patient ID"]).astype(int)
    dropped = {r: raw.loc[reasons == r, "Image Index"].astype(str).tolist() for r in DROP_REASONS[:3]}
    trimmed = int(sum(isinstance(v, str) and normalised(v) != v for v in labels))
    unknown = unknown_values(labels[reasons == "unknown label"])
    drops = DropSummary(str(path), len(raw), dropped, raw.attrs["encoding"], unknown, trimmed,
                        spellings={v: nih_spelling(v) for v in unknown if nih_spelling(v)})
    if kept.empty:
        raise DataError(f"{path} lists no single-label image of the four classes ({drops.line()})")
    return kept.reset_index(drop=True), drops


def unknown_values(labels) -> dict:
    """Each unknown label exactly as written ('' for an empty cell) -> rows, most frequent first."""
    return dict(Counter("" if pd.isna(v) else str(v) for v in labels).most_common())


def nih_spelling(value: str) -> str:
    """NIH's spelling of a label that differs from it only in case (stray spaces aside), else ''."""
    by_lower = {f.lower(): f for f in NIH_FINDINGS}
    parts = [by_lower.get(p.lower()) for p in normalised(value).split("|")]
    return "|".join(parts) if all(parts) else ""
