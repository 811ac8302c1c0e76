"""Reading NIH label files and keeping the four single-label classes."""
from __future__ import annotations

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


def find_metadata(folder: Path) -> Path:
    """Accept any of NIH's label-file names so users need not rename what they downloaded."""
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no NIH label file in {folder}: expected one of {', '.join(METADATA_NAMES)}")


def read_metadata(path: Path) -> pd.DataFrame:
    """Fail with the missing column names rather than a KeyError later."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read label file {path}: {err}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"label file {path} lacks the column(s) {', '.join(missing)}; "
                        f"it has {', '.join(map(str, table.columns))}")
    for name in table["Image Index"]:
        check_image_name(name)
    return table


def check_image_name(name) -> str:
    """An image name is a bare file name: anything that could leave the data folder is refused."""
    text = str(name)
    if not text or text != Path(text).name or text in {".", ".."} or "\\" in text:
        raise DataError(f"image name {text!r} is not a plain file name (it could leave the data folder)")
    return text


def single_label(table: pd.DataFrame) -> pd.DataFrame:
    """The report's task: images whose only label is exactly one of the four classes."""
    keep = table[table["Finding Labels"].isin(CLASSES)].copy()
    keep["label"] = keep["Finding Labels"].map({c: i for i, c in enumerate(CLASSES)}).astype(int)
    keep["Patient ID"] = keep["Patient ID"].astype(int)
    return keep.reset_index(drop=True)


def class_counts(table: pd.DataFrame, column: str = "Finding Labels") -> pd.Series:
    """Counts in the project's class order, zeros included."""
    return table[column].value_counts().reindex(list(CLASSES), fill_value=0)
