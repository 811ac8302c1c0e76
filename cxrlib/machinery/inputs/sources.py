"""Where the images come from: a user's NIH folder, the real sample shipped in data/, or (asked for) a synthetic set."""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrlib.core.config import REPO_ROOT, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.core.manifest import ON_BAD_IMAGE
from cxrlib.machinery.inputs.content import file_records
from cxrlib.machinery.inputs.metadata import METADATA_NAMES, DropSummary, find_metadata, read_labels

# What ships with the project (data/README.md): the real sample and NIH's own label files.
SAMPLE_DIR = REPO_ROOT / "data" / "cxr14-sample"
NIH_METADATA_DIR = REPO_ROOT / "data" / "nih-metadata"
# DATA=synthetic (--data synthetic, CXR_DATA_DIR=synthetic, DATA_DIR = "synthetic"): the only way to get synthetic images
SYNTHETIC = "synthetic"
KIND_TEXT = {"nih": "NIH ChestX-ray14 folder", "sample": "real NIH ChestX-ray14 sample",
             "synthetic": "SYNTHETIC images (not real X-rays)"}
SYNTHETIC_WARNING = ("SYNTHETIC DATA: this run was asked for synthetic images (DATA=synthetic), so every "
                     "number and picture here comes from procedurally generated images. They "
                     "say nothing about chest X-ray classification.")


@dataclass
class Source:
    """A resolved image source with its single-label table, image paths, file records and drop summary."""

    kind: str
    root: Path
    metadata: Path
    table: pd.DataFrame = field(repr=False)
    paths: dict = field(repr=False)
    files: pd.DataFrame = field(default=None, repr=False)  # per image: sha256, width, height, problem
    drops: DropSummary = field(default=None, repr=False)

    @property
    def synthetic(self) -> bool:
        """Pages and outputs must say so loudly when this is true."""
        return self.kind == "synthetic"

    def describe(self) -> str:
        """One phrase for provenance lines."""
        skipped = self.drops.count("unreadable image") if self.drops else 0
        extra = f"; {skipped} unreadable image(s) skipped" if skipped else ""
        return f"{KIND_TEXT[self.kind]} {where(self.root)} ({len(self.table)} single-label images{extra})"

    def fingerprint(self) -> str:
        """Changes whenever the images (by content) or labels a run would use change."""
        digest = hashlib.sha256(self.kind.encode())
        hashes = self.files["sha256"]
        for name, label in zip(self.table["Image Index"], self.table["label"]):
            digest.update(f"{name}:{label}:{hashes[name]};".encode())
        return digest.hexdigest()[:16]

    def native_sizes(self) -> pd.Series:
        """Each image's native size in pixels (its shorter side as stored), by image name."""
        files = self.files.loc[self.table["Image Index"]]
        return files[["width", "height"]].min(axis=1).astype(int)


def where(root: Path) -> str:
    """'shipped with the project in data/cxr14-sample' for the project's own data, else 'at /the/folder'."""
    try:
        inside = Path(root).resolve().relative_to(REPO_ROOT / "data")
    except ValueError:
        return f"at {root}"
    return f"shipped with the project in data/{inside.as_posix()}"


def index_images(root: Path) -> dict:
    """NIH ships images in images/ or in images_0XX/images/; find both layouts."""
    found = {}
    for folder in [root / "images", *sorted(root.glob("images_*/images")), root]:
        if folder.is_dir():
            for path in folder.glob("*.png"):
                found.setdefault(path.name, path)
    return found


def locate(given: Path) -> tuple:
    """(data folder, label file) from a folder or from the label file itself."""
    given = Path(given).expanduser().resolve()
    if given.is_file():
        return given.parent, given
    if not given.is_dir():
        raise DataError(f"data folder {given} does not exist; give the folder holding the label file "
                        f"({' or '.join(METADATA_NAMES[:3])}) and images/, or the label file itself")
    return given, find_metadata(given)


def open_folder(root: Path, kind: str, on_bad_image: str = "fail") -> Source:
    """Read a folder in NIH layout (or its label file), hash every listed image and read its header, and count
    what is left out. Images are decoded (and bad ones reported) only once a split uses them: load_data."""
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}, got {on_bad_image!r}")
    root, metadata = locate(root)
    table, drops = read_labels(metadata)
    if table.empty:
        raise DataError(f"{metadata} lists no single-label image of the four classes ({drops.line()})")
    paths = index_images(root)
    missing = [n for n in table["Image Index"] if n not in paths]
    if missing and kind == "nih" and len(missing) < len(table):
        warnings.warn(f"{len(missing)} of {len(table)} labelled images are not on disk "
                      f"(e.g. {', '.join(missing[:3])}); using the {len(table) - len(missing)} present")
        table = table[table["Image Index"].isin(paths)].reset_index(drop=True)
        drops = drops.add("missing image", missing)
    elif missing:
        raise DataError(f"{len(missing)} image(s) listed in {metadata.name} are missing under {root}: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    paths = {n: paths[n] for n in table["Image Index"]}
    records = file_records(paths.values(), desc="checking")  # content hash, native size, any problem known
    files = pd.DataFrame([vars(r) for r in records], index=pd.Index(list(paths), name="Image Index"))
    return Source(kind, root, metadata, table, paths, files, drops)


def handle_bad_images(table, files, drops, on_bad_image: str, root):
    """Name every unusable image in one error, or (on_bad_image='skip') leave them out and count them."""
    bad = files[files["problem"] != ""]
    if bad.empty:
        return table, drops
    listing = "; ".join(f"{name} ({why})" for name, why in bad["problem"].items())
    if on_bad_image == "fail":
        raise DataError(f"{len(bad)} image(s) under {root} cannot be used: {listing}. Replace or remove them, "
                        f"or set on_bad_image='skip' to leave them out")
    warnings.warn(f"skipping {len(bad)} unusable image(s) under {root}: {listing}")
    table = table[~table["Image Index"].isin(bad.index)].reset_index(drop=True)
    return table, drops.add("unreadable image", bad.index)


def is_synthetic(data_dir) -> bool:
    """True for the word that asks for synthetic images (a folder of that name is given as ./synthetic)."""
    return isinstance(data_dir, str) and data_dir.strip().lower() == SYNTHETIC


def resolve_source(data_dir=None, on_bad_image: str = "fail") -> Source:
    """An explicit NIH folder (data_dir, else CXR_DATA_DIR), else the real sample (CXR_SAMPLE_DIR, else the one
    shipped in data/); synthetic images only when data_dir or CXR_DATA_DIR is 'synthetic'. Never a silent fallback."""
    explicit = data_dir or os.environ.get("CXR_DATA_DIR")
    if is_synthetic(explicit):
        from cxrlib.science.data.synthetic import make_synthetic

        warnings.warn(SYNTHETIC_WARNING)
        return open_folder(make_synthetic(cache_dir() / "synthetic"), "synthetic", on_bad_image)
    if explicit:
        return open_folder(Path(explicit), "nih", on_bad_image)
    sample = Path(os.environ.get("CXR_SAMPLE_DIR", SAMPLE_DIR))
    if not sample.is_dir():
        raise DataError(f"the real sample is missing: expected it at {sample} (it ships with the project in "
                        f"data/cxr14-sample; CXR_SAMPLE_DIR names another copy); give an NIH folder with DATA=/path, "
                        f"or ask for synthetic images with DATA=synthetic (--data synthetic, CXR_DATA_DIR=synthetic)")
    return open_folder(sample, "sample", on_bad_image)


def nih_metadata_dir() -> Path:
    """NIH's label file and box list: CXR_NIH_METADATA, else the copy shipped in data/nih-metadata."""
    return Path(os.environ.get("CXR_NIH_METADATA", NIH_METADATA_DIR))


def nih_label_file():
    """NIH's full label file (all 112,120 images) when it is anywhere we know of, else None."""
    try:
        return find_metadata(nih_metadata_dir())
    except DataError:
        return None
