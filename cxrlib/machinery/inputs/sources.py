"""Step 1 of the data path: the folder and its label file (a user's NIH folder, the real sample shipped in data/,
or, asked for, a synthetic set), then the label file read, and each row kept (one of the four classes alone) or
dropped with its reason."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlib.core.config import CLASSES, REPO_ROOT, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.present.dataset import DROP_REASONS, SYNTHETIC_WARNING, DropSummary, source_phrase

# What ships with the project (data/README.md): the real sample and NIH's own label files.
SAMPLE_DIR = REPO_ROOT / "data" / "cxr14-sample"
NIH_METADATA_DIR = REPO_ROOT / "data" / "nih-metadata"
# Names NIH has used for its label file, newest first; the sample ships labels.csv.
METADATA_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv",
                  "Data_Entry_2017.csv.gz", "labels.csv")
# DATA=synthetic (--data synthetic, CXR_DATA_DIR=synthetic, DATA_DIR = "synthetic"): the only way to get synthetic images
SYNTHETIC = "synthetic"
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
# NIH's fourteen findings and "No Finding": a label outside these is a typo or another data set's name.
NIH_FINDINGS = ("No Finding", "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
# Characters no label file holds as text: what a UTF-16 file or a binary file looks like when read as 8-bit text.
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class Source:
    """An image set: its kind ('nih', 'sample' or 'synthetic'), folder and label file, then its one table, a row
    per kept image (filled in by each step), and what its label file lost."""

    kind: str
    root: Path
    label_file: Path
    table: pd.DataFrame = field(default=None, repr=False)
    drops: DropSummary = field(default=None, repr=False)

    @property
    def synthetic(self) -> bool:
        """Pages and outputs must say so loudly when this is true."""
        return self.kind == "synthetic"

    def describe(self) -> str:
        """One phrase for provenance lines."""
        return source_phrase(self.kind, self.root, len(self.table), self.drops.count("unreadable image"))

    def fingerprint(self) -> str:
        """Changes whenever the images (by content) or labels a run would use change."""
        digest = hashlib.sha256(self.kind.encode())
        for name, label, sha in zip(self.table["Image Index"], self.table["label"], self.table["sha256"]):
            digest.update(f"{name}:{label}:{sha};".encode())
        return digest.hexdigest()[:16]

    def paths(self, ids) -> list:
        """The image files of these image ids, in order."""
        return self.table.set_index("Image Index").loc[list(ids), "path"].tolist()


def is_synthetic(data_dir) -> bool:
    """True for the word that asks for synthetic images (a folder of that name is given as ./synthetic)."""
    return isinstance(data_dir, str) and data_dir.strip().lower() == SYNTHETIC


def resolve_source(data_dir=None) -> Source:
    """An explicit NIH folder (data_dir, else CXR_DATA_DIR), else the real sample (CXR_SAMPLE_DIR, else the one
    shipped in data/); synthetic images only when data_dir or CXR_DATA_DIR is 'synthetic'. Never a silent fallback."""
    explicit = data_dir or os.environ.get("CXR_DATA_DIR")
    if is_synthetic(explicit):
        from cxrlib.machinery.synthetic import make_synthetic

        warnings.warn(SYNTHETIC_WARNING)
        return locate(make_synthetic(cache_dir() / "synthetic"), "synthetic")
    if explicit:
        return locate(Path(explicit), "nih")
    sample = Path(os.environ.get("CXR_SAMPLE_DIR", SAMPLE_DIR))
    if not sample.is_dir():
        raise DataError(f"the real sample is missing: expected it at {sample} (it ships with the project in "
                        f"data/cxr14-sample; CXR_SAMPLE_DIR names another copy); give an NIH folder with DATA=/path, "
                        f"or ask for synthetic images with DATA=synthetic (--data synthetic, CXR_DATA_DIR=synthetic)")
    return locate(sample, "sample")


def locate(given: Path, kind: str) -> Source:
    """The source's folder and label file, from the label file itself or from the folder, under any of NIH's
    label-file names so users need not rename what they downloaded."""
    given = Path(given).expanduser().resolve()
    if given.is_file():
        return Source(kind, given.parent, given)
    if not given.is_dir():
        raise DataError(f"data folder {given} does not exist; give the folder holding the label file "
                        f"({' or '.join(METADATA_NAMES[:3])}) and images/, or the label file itself")
    for name in METADATA_NAMES:
        if (given / name).is_file():
            return Source(kind, given, given / name)
    raise DataError(f"no NIH label file in {given}: expected one of {', '.join(METADATA_NAMES)}")


def nih_metadata_dir() -> Path:
    """NIH's label file and box list: CXR_NIH_METADATA, else the copy shipped in data/nih-metadata."""
    return Path(os.environ.get("CXR_NIH_METADATA", NIH_METADATA_DIR))


def nih_label_file():
    """NIH's full label file (all 112,120 images) when it is anywhere we know of, else None."""
    try:
        return locate(nih_metadata_dir(), "nih").label_file
    except DataError:
        return None


def read_labels(path: Path) -> tuple:
    """(the rows of the four single-label classes, DropSummary): every row left out with its reason, the unknown
    label values with their counts (and NIH's spelling where only case differs), the labels trimmed, the encoding."""
    raw = read_metadata(path)
    labels, reasons = raw["Finding Labels"], raw["Finding Labels"].map(label_reason)
    kept = single_label(raw, reasons)
    dropped = {r: raw.loc[reasons == r, "Image Index"].astype(str).tolist() for r in DROP_REASONS[:3]}
    trimmed = int(sum(isinstance(v, str) and normalised(v) != v for v in labels))
    # each unknown label exactly as written ('' for an empty cell) -> rows, most frequent first
    unknown = Counter("" if pd.isna(v) else str(v) for v in labels[reasons == "unknown label"])
    drops = DropSummary(str(path), len(raw), dropped, raw.attrs["encoding"], dict(unknown.most_common()), trimmed,
                        spellings={v: nih_spelling(v) for v in unknown if nih_spelling(v)})
    if kept.empty:
        raise DataError(f"{path} lists no single-label image of the four classes ({drops.line()})")
    return kept.reset_index(drop=True), drops


def single_label(raw: pd.DataFrame, reasons=None) -> pd.DataFrame:
    """The rows whose only label is one of the four classes (labels trimmed), with 'label' and 'Patient ID'."""
    reasons = raw["Finding Labels"].map(label_reason) if reasons is None else reasons
    kept = raw[reasons == ""].assign(**{"Finding Labels": raw.loc[reasons == "", "Finding Labels"].map(str.strip)})
    kept["label"] = kept["Finding Labels"].map({c: i for i, c in enumerate(CLASSES)}).astype(int)
    kept["Patient ID"] = pd.to_numeric(kept["Patient ID"]).astype(int)
    return kept


def read_metadata(path: Path) -> pd.DataFrame:
    """Fail with the missing column names rather than a KeyError later, and name any hostile row. The text
    encoding used (see label_text) is in the table's attrs["encoding"]."""
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
    check_rows(table, path)
    table.attrs["encoding"] = encoding
    return table


def label_text(path: Path) -> tuple:
    """(text, encoding) of a label file, unpacked when NIH's .gz name says so: UTF-8 (a BOM allowed), else
    Windows-1252 or Latin-1, as spreadsheets save (they differ only in bytes 0x80-0x9F: a file without them is named
    Latin-1). A file that is text in none of these (UTF-16, a binary file) is refused with the line and what to do."""
    try:
        data = Path(path).read_bytes()
        data = gzip.decompress(data) if str(path).endswith(".gz") else data
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read label file {path}: {getattr(err, 'strerror', None) or err}") from err
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


def check_rows(table: pd.DataFrame, path) -> None:
    """Refuse, naming the row: an image name that is not a bare file name (it could leave the data folder), an
    image listed twice (two labels, or counted twice), a Patient ID that is not a whole number (it decides the
    split)."""
    for row, name in enumerate(table["Image Index"], start=1):
        if pd.isna(name):
            raise DataError(f"label file {path}, row {row}: no image name (the 'Image Index' cell is empty)")
        text = str(name)
        if not text or text != Path(text).name or text in {".", ".."} or "\\" in text:
            raise DataError(f"label file {path}, row {row}: image name {text!r} is not a plain file name (it "
                            f"could leave the data folder)")
    repeated = table["Image Index"].duplicated(keep=False)
    if repeated.any():
        name = table.loc[repeated, "Image Index"].iloc[0]
        rows = [i + 1 for i in table.index[table["Image Index"] == name]]
        raise DataError(f"label file {path}: image {name!r} is listed in rows {', '.join(map(str, rows))} "
                        f"({int(repeated.sum())} rows repeat an image); each image may appear once")
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


def nih_spelling(value: str) -> str:
    """NIH's spelling of a label that differs from it only in case (stray spaces aside), else ''."""
    by_lower = {f.lower(): f for f in NIH_FINDINGS}
    parts = [by_lower.get(p.lower()) for p in normalised(value).split("|")]
    return "|".join(parts) if all(parts) else ""
