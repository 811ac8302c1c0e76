"""A deterministic synthetic folder in NIH ChestX-ray14's own layout, at any size, for benchmarks and tests.

    python -m benchmarks.nih_folder OUT --count 16000 [--size 1024] [--seed 0]

Layout as NIH ships it: Data_Entry_2017.csv (NIH's columns; the four classes plus labels the loader
must drop) and images_001/images/ (4,999 images), images_002/images/ ... (10,000 each), 8-bit grey PNGs
of size x size (1,024 as NIH's). Pictures come from cxrlib.data.synthetic's drawing code. Drawing and
PNG-compressing 16,000 megapixel pictures would take longer than the benchmark itself, so a pool of
POOL_PER_CLASS pictures per class is drawn and compressed once, and each file is its class's pool
picture with the file's own id in a PNG text chunk: every file differs in content (and content hash),
and decoding it costs what decoding a real NIH PNG of that size does. Folders made with the same seed
agree file for file, so a smaller folder can be hard links into a larger one.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

POOL_PER_CLASS = 8
FIRST_FOLDER, PER_FOLDER = 4999, 10_000  # NIH: images_001 holds 4,999 images, the others 10,000
# Labels drawn for each row (the last two are multi-label or other findings the loader must drop).
LABELS = ("No Finding", "Effusion", "Infiltration", "Atelectasis", "Effusion|Infiltration", "Nodule")
LABEL_SHARES = (0.5, 0.12, 0.16, 0.1, 0.06, 0.06)
VERSION = 1


def folder_of(index: int) -> str:
    """images_0XX for the index-th image, with NIH's per-folder counts."""
    number = 1 if index < FIRST_FOLDER else 2 + (index - FIRST_FOLDER) // PER_FOLDER
    return f"images_{number:03d}"


def rows(count: int, seed: int = 0) -> pd.DataFrame:
    """NIH-format label rows, one to four images per patient: the first `count` of one endless sequence."""
    label_rng, patient_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 3])
    table, patient, follow_up, left = [], 1, 0, int(patient_rng.integers(1, 5))
    for i in range(count):
        if left == 0:
            patient, follow_up, left = patient + 1, 0, int(patient_rng.integers(1, 5))
        label = LABELS[int(np.searchsorted(np.cumsum(LABEL_SHARES), label_rng.random() * sum(LABEL_SHARES)))]
        table.append({"Image Index": f"{patient:08d}_{follow_up:03d}.png", "Finding Labels": label,
                      "Follow-up #": follow_up, "Patient ID": patient, "Patient Age": int(20 + (i * 37) % 60),
                      "Patient Gender": "MF"[i % 2], "View Position": ("PA", "AP")[i % 3 == 0],
                      "OriginalImage[Width": 2048, "Height]": 2048, "OriginalImagePixelSpacing[x": 0.143,
                      "y]": 0.143})
        follow_up, left = follow_up + 1, left - 1
    return pd.DataFrame(table)


def pool(size: int, seed: int = 0) -> dict:
    """label index -> POOL_PER_CLASS PNG files (bytes) of size x size, drawn by the synthetic source."""
    from PIL import Image

    from cxrlib.data.synthetic import render

    rng = np.random.default_rng([seed, 2])
    pictures = {}
    for label in range(len(LABELS)):
        drawn = min(label, 3) if label < 4 else 0  # other findings look like No Finding here
        pngs = []
        for _ in range(POOL_PER_CLASS):
            image = Image.fromarray(render(drawn, rng)).resize((size, size), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=6)
            pngs.append(buffer.getvalue())
        pictures[label] = pngs
    return pictures


def with_id(png: bytes, text: str) -> bytes:
    """The PNG with a tEXt chunk holding text inserted after its header chunk (pixels unchanged)."""
    data = b"cxr-bench-id\x00" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    header_end = 8 + 25  # signature + IHDR (length, type, 13 bytes, crc)
    return png[:header_end] + chunk + png[header_end:]


def make_nih_folder(root, count: int, size: int = 1024, seed: int = 0, link_from=None) -> Path:
    """Write (once) a count-image NIH-layout folder; link_from, a larger folder of the same seed and size,
    supplies its files as hard links instead of new copies."""
    root = Path(root)
    stamp = root / "nih_synthetic.json"
    spec = {"count": count, "size": size, "seed": seed, "version": VERSION}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return root
    table = rows(count, seed)
    label_index = table["Finding Labels"].map({name: i for i, name in enumerate(LABELS)}).to_numpy()
    source = _linkable(link_from, count, size, seed)
    pictures = None if source else pool(size, seed)
    for i, name in enumerate(table["Image Index"]):
        target = root / folder_of(i) / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        if source:
            os.link(source / folder_of(i) / "images" / name, target)
        else:
            target.write_bytes(with_id(pictures[label_index[i]][i % POOL_PER_CLASS], name))
    table.to_csv(root / "Data_Entry_2017.csv", index=False)
    stamp.write_text(json.dumps(spec))
    return root


def _linkable(folder, count: int, size: int, seed: int):
    """The folder, when it was made by make_nih_folder with this seed and size and at least count images."""
    if folder is None or not (Path(folder) / "nih_synthetic.json").is_file():
        return None
    spec = json.loads((Path(folder) / "nih_synthetic.json").read_text())
    usable = spec["size"] == size and spec["seed"] == seed and spec["count"] >= count and spec["version"] == VERSION
    return Path(folder) if usable else None


def main(argv=None):
    """Command line: write one folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_nih_folder(args.out, args.count, args.size, args.seed))


if __name__ == "__main__":
    main()
