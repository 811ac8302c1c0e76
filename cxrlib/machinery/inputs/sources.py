"""Step 1 of the data path: the folder and its label file (a user's NIH folder, the real sample shipped in data/,
or, asked for, a synthetic set)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

from cxrlib.core.config import REPO_ROOT, cache_dir
from cxrlib.core.errors import DataError

# What ships with the project (data/README.md): the real sample and NIH's own label files.
SAMPLE_DIR = REPO_ROOT / "data" / "cxr14-sample"
NIH_METADATA_DIR = REPO_ROOT / "data" / "nih-metadata"
# Names NIH has used for its label file, newest first; the sample ships labels.csv.
METADATA_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv",
                  "Data_Entry_2017.csv.gz", "labels.csv")
# DATA=synthetic (--data synthetic, CXR_DATA_DIR=synthetic, DATA_DIR = "synthetic"): the only way to get synthetic images
SYNTHETIC = "synthetic"
SYNTHETIC_WARNING = ("SYNTHETIC DATA: this run was asked for synthetic images (DATA=synthetic), so every "
                     "number and picture here comes from procedurally generated images. They "
                     "say nothing about chest X-ray classification.")


class Place(NamedTuple):
    """Where an image set lives: its kind ('nih', 'sample' or 'synthetic'), its folder and its label file."""

    kind: str
    root: Path
    label_file: Path


def is_synthetic(data_dir) -> bool:
    """True for the word that asks for synthetic images (a folder of that name is given as ./synthetic)."""
    return isinstance(data_dir, str) and data_dir.strip().lower() == SYNTHETIC


def resolve_source(data_dir=None) -> Place:
    """An explicit NIH folder (data_dir, else CXR_DATA_DIR), else the real sample (CXR_SAMPLE_DIR, else the one
    shipped in data/); synthetic images only when data_dir or CXR_DATA_DIR is 'synthetic'. Never a silent fallback."""
    explicit = data_dir or os.environ.get("CXR_DATA_DIR")
    if is_synthetic(explicit):
        from cxrlib.science.data.synthetic import make_synthetic

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


def locate(given: Path, kind: str) -> Place:
    """The place, from a folder or from the label file itself."""
    given = Path(given).expanduser().resolve()
    if given.is_file():
        return Place(kind, given.parent, given)
    if not given.is_dir():
        raise DataError(f"data folder {given} does not exist; give the folder holding the label file "
                        f"({' or '.join(METADATA_NAMES[:3])}) and images/, or the label file itself")
    return Place(kind, given, find_metadata(given))


def find_metadata(folder: Path) -> Path:
    """Accept any of NIH's label-file names so users need not rename what they downloaded."""
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no NIH label file in {folder}: expected one of {', '.join(METADATA_NAMES)}")


def where(root: Path) -> str:
    """'shipped with the project in data/cxr14-sample' for the project's own data, else 'at /the/folder'."""
    try:
        inside = Path(root).resolve().relative_to(REPO_ROOT / "data")
    except ValueError:
        return f"at {root}"
    return f"shipped with the project in data/{inside.as_posix()}"


def nih_metadata_dir() -> Path:
    """NIH's label file and box list: CXR_NIH_METADATA, else the copy shipped in data/nih-metadata."""
    return Path(os.environ.get("CXR_NIH_METADATA", NIH_METADATA_DIR))


def nih_label_file():
    """NIH's full label file (all 112,120 images) when it is anywhere we know of, else None."""
    try:
        return find_metadata(nih_metadata_dir())
    except DataError:
        return None
