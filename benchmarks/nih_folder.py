"""A partial download of NIH ChestX-ray14, made up: NIH's own 112,120-row label file and `count` of its images.

    python -m benchmarks.nih_folder OUT --count 16000 [--size 1024] [--seed 0]

Layout as NIH ships it: Data_Entry_2017_v2020.csv (NIH's real label file, data/nih-metadata's copy
uncompressed, every one of its 112,120 rows) and images_001/images/ ... images_012/images/, each image in
the archive NIH puts it in (its place in the sorted list of all 112,120 names: 4,999 in the first archive,
10,000 in each of the others). Only `count` of the listed images are present, so the other rows are a
partial download's missing images, which the loader must count and skip.

Which images are present: CLASS_SHARES of `count` are rows whose only label is one of the four classes
(so they are kept), in shares that let the full profile's caps (the report's 13,873 images) nearly fill at
16,000 images; the rest (OTHER_SHARE) are multi-label rows and other findings, which the loader must drop.
Rows are drawn with the seed from NIH's label file, so patients come as NIH has them.

How the pictures were made: drawing and PNG-compressing 16,000 megapixel pictures would take longer than
the benchmark itself, so a pool of POOL_PER_CLASS pictures per class (cxrlib.machinery.synthetic's drawing, at
256 px with its noise, brought up to `size` px, 8-bit grey) is drawn and compressed once; each file is a
pool picture (chosen by a hash of its name) with the file's own name in a PNG text chunk. Every file is
written as a file of its own (no links), so every file differs in content and content hash and is read from
disk or page cache like any other; its pixels decode exactly as the pool picture's, so decoding costs what
a real NIH PNG of that size and file size does (the pool's PNGs are about 340 KB at 1,024 px; NIH's
average about 370 KB). Folders made with the same seed and size agree file for file, so a smaller one can be
made of hard links into a larger one (link_from).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.machinery.inputs.sources import NIH_METADATA_DIR

NIH_LABEL_FILE = NIH_METADATA_DIR / "Data_Entry_2017_v2020.csv.gz"
LABEL_FILE_NAME = "Data_Entry_2017_v2020.csv"  # as NIH ships it (uncompressed)
FIRST_FOLDER, PER_FOLDER = 4999, 10_000  # NIH: images_001 holds 4,999 images, the others 10,000
# Shares of the present images per class (CLASSES order); at 16,000 images each class has enough
# images for the full profile's caps after the 80/10/10 patient split. The rest: multi-label and other findings.
CLASS_SHARES = (0.2575, 0.2, 0.2575, 0.205)
OTHER_SHARE = 1 - sum(CLASS_SHARES)
OTHERS = "others"
POOL_PER_CLASS = 16
VERSION = 2


def folder_of(index: int) -> str:
    """images_0XX for the index-th image of NIH's sorted list, with NIH's per-folder counts."""
    number = 1 if index < FIRST_FOLDER else 2 + (index - FIRST_FOLDER) // PER_FOLDER
    return f"images_{number:03d}"


def nih_rows() -> pd.DataFrame:
    """NIH's label file as shipped in data/nih-metadata, every row."""
    return pd.read_csv(NIH_LABEL_FILE)


def kind_of(labels: pd.Series) -> pd.Series:
    """The class name of single-label rows of the four classes, OTHERS for every other row."""
    return labels.where(labels.isin(CLASSES), OTHERS)


def quotas(count: int, available: dict) -> dict:
    """Present images per kind (each class, then OTHERS) for a folder of count images."""
    wanted = {c: min(int(round(s * count)), available[c]) for c, s in zip(CLASSES, CLASS_SHARES)}
    wanted[OTHERS] = count - sum(wanted.values())
    if wanted[OTHERS] > available[OTHERS]:
        raise ValueError(f"NIH's label file lists too few images for a folder of {count:,}")
    return wanted


def chosen(table: pd.DataFrame, count: int, seed: int = 0) -> pd.DataFrame:
    """The rows whose images are present: each kind's rows in one seeded order, the first of each taken.

    The order does not depend on count, so a smaller folder's images are (nearly) a subset of a larger one's.
    """
    kinds = kind_of(table["Finding Labels"])
    available = kinds.value_counts().to_dict()
    picked = []
    for i, (kind, n) in enumerate(quotas(count, available).items()):
        rows = table.index[kinds == kind].to_numpy()
        order = np.random.default_rng([seed, i]).permutation(len(rows))
        picked.append(rows[order[:n]])
    return table.loc[np.sort(np.concatenate(picked))]


def pool(size: int, seed: int = 0) -> dict:
    """kind -> POOL_PER_CLASS PNG files (bytes) of size x size, drawn by the synthetic source."""
    from PIL import Image

    from cxrlib.machinery.synthetic import render

    rng = np.random.default_rng([seed, 2])
    pictures = {}
    for kind in (*CLASSES, OTHERS):
        drawn = CLASSES.index(kind) if kind in CLASSES else 0  # other findings are drawn like No Finding
        pngs = []
        for _ in range(POOL_PER_CLASS):
            image = Image.fromarray(render(drawn, rng)).resize((size, size), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=6)
            pngs.append(buffer.getvalue())
        pictures[kind] = pngs
    return pictures


def with_id(png: bytes, text: str) -> bytes:
    """The PNG with a tEXt chunk holding text inserted after its header chunk (pixels unchanged)."""
    data = b"cxr-bench-id\x00" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    header_end = 8 + 25  # signature + IHDR (length, type, 13 bytes, crc)
    return png[:header_end] + chunk + png[header_end:]


def picture(pictures: dict, kind: str, name: str) -> bytes:
    """The file for one image: its kind's pool picture chosen by its name, with its name inside."""
    pngs = pictures[kind]
    return with_id(pngs[zlib.crc32(name.encode()) % len(pngs)], name)


def make_nih_folder(root, count: int, size: int = 1024, seed: int = 0, link_from=None) -> Path:
    """Write (once) NIH's label file and count of its images in NIH's layout; link_from, a larger folder of the
    same seed and size, supplies the files it has as hard links instead of new copies."""
    root = Path(root)
    stamp = root / "nih_synthetic.json"
    spec = {"count": count, "size": size, "seed": seed, "version": VERSION}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return root
    if root.is_dir() and any(root.iterdir()) and not stamp.is_file():
        raise ValueError(f"{root} is not empty and was not made by make_nih_folder; give a new or empty folder")
    shutil.rmtree(root, ignore_errors=True)  # an older or other-sized folder of ours: made afresh
    root.mkdir(parents=True)
    table = nih_rows()
    place = {name: i for i, name in enumerate(sorted(table["Image Index"]))}
    present = chosen(table, count, seed)
    source = _linkable(link_from, size, seed)
    pictures = None
    for name, kind in zip(present["Image Index"], kind_of(present["Finding Labels"])):
        target = root / folder_of(place[name]) / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        linked = source / folder_of(place[name]) / "images" / name if source else None
        if linked is not None and linked.is_file():
            os.link(linked, target)
            continue
        pictures = pictures or pool(size, seed)
        target.write_bytes(picture(pictures, kind, name))
    with gzip.open(NIH_LABEL_FILE, "rb") as packed, open(root / LABEL_FILE_NAME, "wb") as out:
        shutil.copyfileobj(packed, out)
    stamp.write_text(json.dumps(spec))
    return root


def present_rows(root) -> pd.DataFrame:
    """The label file's rows whose images are in the folder, in the label file's order."""
    root = Path(root)
    names = {p.name for p in root.glob("images_*/images/*.png")}
    table = pd.read_csv(root / LABEL_FILE_NAME)
    return table[table["Image Index"].isin(names)].reset_index(drop=True)


def _linkable(folder, size: int, seed: int):
    """The folder, when it was made by make_nih_folder (this version) with this seed and size."""
    if folder is None or not (Path(folder) / "nih_synthetic.json").is_file():
        return None
    spec = json.loads((Path(folder) / "nih_synthetic.json").read_text())
    usable = spec["size"] == size and spec["seed"] == seed and spec["version"] == VERSION
    return Path(folder) if usable else None


def main(argv=None):
    """Command line: write one folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=16_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_nih_folder(args.out, args.count, args.size, args.seed))


if __name__ == "__main__":
    main()
