"""Where the images come from: a user's NIH folder, the shared real sample, or a synthetic set."""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlib.config import REPO_ROOT, cache_dir
from cxrlib.data.errors import DataError
from cxrlib.data.metadata import find_metadata, read_metadata, single_label

SAMPLE_DIR = REPO_ROOT.parent / "shared" / "cxr14-sample"
NIH_METADATA_DIR = REPO_ROOT.parent / "shared" / "nih-metadata"
KIND_TEXT = {"nih": "NIH ChestX-ray14 folder", "sample": "real NIH sample",
             "synthetic": "SYNTHETIC images (not real X-rays)"}
SYNTHETIC_WARNING = ("SYNTHETIC DATA: no NIH images and no real sample were found, so every "
                     "number and picture here comes from procedurally generated images. They "
                     "say nothing about chest X-ray classification.")


@dataclass
class Source:
    """A resolved image source with its single-label table and image paths."""

    kind: str
    root: Path
    metadata: Path
    table: pd.DataFrame = field(repr=False)
    paths: dict = field(repr=False)

    @property
    def synthetic(self) -> bool:
        """Pages and outputs must say so loudly when this is true."""
        return self.kind == "synthetic"

    def describe(self) -> str:
        """One phrase for provenance lines."""
        return f"{KIND_TEXT[self.kind]} at {self.root} ({len(self.table)} single-label images)"

    def fingerprint(self) -> str:
        """Changes whenever the images or labels a run would use change."""
        digest = hashlib.sha256(self.kind.encode())
        for name, label in zip(self.table["Image Index"], self.table["label"]):
            path = self.paths[name]
            digest.update(f"{name}:{label}:{path.stat().st_size}".encode())
        return digest.hexdigest()[:16]


def index_images(root: Path) -> dict:
    """NIH ships images in images/ or in images_0XX/images/; find both layouts."""
    found = {}
    for folder in [root / "images", *sorted(root.glob("images_*/images")), root]:
        if folder.is_dir():
            for path in folder.glob("*.png"):
                found.setdefault(path.name, path)
    return found


def open_folder(root: Path, kind: str) -> Source:
    """Read a folder in NIH layout and check that every listed image is there."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    metadata = find_metadata(root)
    table = single_label(read_metadata(metadata))
    if table.empty:
        raise DataError(f"{metadata} lists no single-label image of the four classes")
    paths = index_images(root)
    missing = [n for n in table["Image Index"] if n not in paths]
    if missing and kind == "nih" and len(missing) < len(table):
        warnings.warn(f"{len(missing)} of {len(table)} labelled images are not on disk "
                      f"(e.g. {', '.join(missing[:3])}); using the {len(table) - len(missing)} present")
        table = table[table["Image Index"].isin(paths)].reset_index(drop=True)
    elif missing:
        raise DataError(f"{len(missing)} image(s) listed in {metadata.name} are missing under {root}: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return Source(kind, root, metadata, table, {n: paths[n] for n in table["Image Index"]})


def resolve_source(data_dir=None, allow_synthetic: bool = True) -> Source:
    """Prefer an explicit NIH folder, then the real sample, then synthetic images (with a warning)."""
    explicit = data_dir or os.environ.get("CXR_DATA_DIR")
    if explicit:
        return open_folder(Path(explicit), "nih")
    sample = Path(os.environ.get("CXR_SAMPLE_DIR", SAMPLE_DIR))
    if sample.is_dir():
        return open_folder(sample, "sample")
    if not allow_synthetic:
        raise DataError(f"no data: set DATA_DIR / CXR_DATA_DIR, or place the sample at {sample}")
    from cxrlib.data.synthetic import make_synthetic

    warnings.warn(SYNTHETIC_WARNING)
    return open_folder(make_synthetic(cache_dir() / "synthetic"), "synthetic")


def nih_label_file():
    """NIH's full label file (all 112,120 images) when it is anywhere we know of, else None."""
    folder = Path(os.environ.get("CXR_NIH_METADATA", NIH_METADATA_DIR))
    try:
        return find_metadata(folder)
    except DataError:
        return None
