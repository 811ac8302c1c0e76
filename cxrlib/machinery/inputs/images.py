"""Step 5 of the data path: the images a split uses checked, resized and cached in one decode each, and the cached
arrays every split is read from. Images no split uses are never decoded; how one file is decoded and checked is
cxrlib.machinery.inputs.decode's.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.core.files import write_atomic
from cxrlib.machinery.inputs import decode as decoder
from cxrlib.machinery.inputs.content import content_hashes, record_problems, threads
from cxrlib.machinery.inputs.decode import DECODE_VERSION, BadImage, resized
from cxrlib.science.data.splits import SPLITS
from cxrlib.science.otsu import transform_step, unchanged

# Freed image memory Pillow keeps for reuse per decoding thread while decoding many images (a decoded
# image and the steps of its resize), so each image does not pay the page faults of fresh memory.
BLOCKS_PER_THREAD = 8


def first_touch(table: pd.DataFrame, drops, root, on_bad_image: str, size=None, harmonise: bool = False) -> tuple:
    """(table, drops, harmonise_to) once every image a split uses is known to be usable, before any training.

    Images never decoded before are decoded once here (decode_unknown). Bad images fail in one error naming
    each or, with on_bad_image="skip", leave the table and are counted. harmonise: harmonise_to is then the
    smallest native size of the usable images the splits use, when they differ (else None).
    """
    used = table["split"].notna()
    harmonise_to = smallest_size(table[used]) if harmonise else None
    if table.loc[used, "problem"].isna().any():
        found = decode_unknown(table[used], size, harmonise_to)
        table.loc[found.index, "problem"] = found
    bad = table[used & (table["problem"] != "")]
    if bad.empty:
        return table, drops, harmonise_to
    listing = "; ".join(f"{name} ({why})" for name, why in zip(bad["Image Index"], bad["problem"]))
    if on_bad_image == "fail":
        raise DataError(f"{len(bad)} image(s) under {root} cannot be used: {listing}. Replace or remove them, "
                        f"or set on_bad_image='skip' to leave them out")
    warnings.warn(f"skipping {len(bad)} unusable image(s) under {root}: {listing}")
    table = table.drop(bad.index).reset_index(drop=True)
    harmonise_to = smallest_size(table[table["split"].notna()]) if harmonise else None
    return table, drops.add("unreadable image", bad["Image Index"]), harmonise_to


def decode_unknown(used: pd.DataFrame, size, harmonise_to) -> pd.Series:
    """The problem ('' when usable) of each image decoded now, by row, stored in the content index.

    With a size, each split holding an image never decoded is decoded once and cached at that size (the array
    its images() will read); without, only those images are decoded, to be checked.
    """
    usable = used[used["problem"].fillna("") == ""]  # an image known to be bad joins no split's array
    if size is None:
        parts = {"checking": usable[usable["problem"].isna()]}
    else:
        parts = {split: usable[usable["split"] == split] for split in SPLITS}
        parts = {split: part for split, part in parts.items() if part["problem"].isna().any()}
    found = []
    for desc, part in parts.items():
        paths = part["path"].tolist()
        problems = check_images(paths) if size is None else first_decode(paths, size, harmonise_to, desc)
        record_problems(paths, problems)
        found.append(pd.Series(problems, index=part.index, dtype=object))
    return pd.concat(found)


def smallest_size(rows: pd.DataFrame):
    """The native size (shorter side) every image is brought down to when harmonising; None when all agree.
    Images known to be unusable do not count."""
    usable = rows[rows["problem"].fillna("") == ""]
    sizes = usable[["width", "height"]].min(axis=1)
    return int(sizes.min()) if sizes.nunique() > 1 else None


def cache_file(paths, size: int, transform=None, harmonise_to=None) -> Path:
    """Where the array of these images at this size (harmonised, transformed) is cached: its name comes from the
    images' content hashes, the decode version, the size, the harmonised size and the transform."""
    digest = hashlib.sha256(f"{DECODE_VERSION}:{size}:{transform}:{harmonise_to}".encode())
    for sha in content_hashes(paths):
        digest.update(f"{sha};".encode())
    return cache_dir() / "images" / f"{digest.hexdigest()[:20]}_{size}.npy"


def load_images(paths, size: int, desc: str = "decoding", transform=None, harmonise_to=None) -> np.ndarray:
    """(N, size, size) uint8, decoded in threads the first time and memory-mapped afterwards.

    transform names a registered per-image function (e.g. "otsu"), applied to the cached untransformed array, so a
    transform decodes nothing again. harmonise_to first brings every larger image down to that many pixels a side.
    """
    paths, step = [Path(p) for p in paths], transform_step(transform)
    target = cache_file(paths, size, transform, harmonise_to)
    if target.is_file():
        return np.load(target, mmap_mode="r")
    if transform:
        plain = load_images(paths, size, desc, None, harmonise_to)
        return publish(target, len(paths), size, lambda out: copy_rows(out, plain, range(len(plain)), step))
    return publish(target, len(paths), size, lambda out: decode_all(out, paths, size, harmonise_to, desc))


def first_decode(paths, size: int, harmonise_to=None, desc: str = "checking") -> list:
    """Each image's problem ('' when usable), from one decode per image that both checks it and resizes it.

    The usable images' array, in path order, is cached exactly as load_images makes it, so a split that
    keeps them (bad images skipped) is then served without decoding again. A cached array holds only
    usable images, so when one is found nothing is decoded.
    """
    paths = [Path(p) for p in paths]
    target = cache_file(paths, size, None, harmonise_to)
    if not paths or target.is_file():
        return [""] * len(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.first.tmp.npy")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), size, size))
        reasons = fill(out, paths, size, unchanged, harmonise_to, desc)
        usable = [row for row, why in enumerate(reasons) if not why]
        out.flush()
        if len(usable) == len(paths):
            os.replace(partial, target)
        elif usable:
            publish(cache_file([paths[r] for r in usable], size, None, harmonise_to), len(usable), size,
                    lambda kept: copy_rows(kept, out, usable))
        del out
    finally:
        partial.unlink(missing_ok=True)
    return reasons


def check_images(paths, desc: str = "checking") -> list:
    """Each image's problem ('' when usable), from one full decode each; for callers that name no size."""
    return problems(decoder.checked_pixels, paths, f"{desc} {len(paths)} images")


def fill(out: np.ndarray, paths, size: int, step=unchanged, harmonise_to=None, desc: str = "decoding") -> list:
    """Decode in threads straight into out (N, size, size), in path order; each image's problem ('' when usable).

    Each image is checked and resized in the same decode. Writing each image into its row, rather than
    stacking a list, keeps peak memory near one array.
    """
    def one(item):
        row, path = item
        out[row] = step(resized(decoder.checked_pixels(path), size, harmonise_to))

    with reused_image_memory(threads()):
        return problems(one, list(enumerate(paths)), f"{desc} {len(paths)} images at {size}px")


def decode_all(out: np.ndarray, paths, size: int, harmonise_to=None, desc: str = "decoding") -> None:
    """fill, with every unusable image named in one error."""
    reasons = fill(out, paths, size, unchanged, harmonise_to, desc)
    errors = [f"{Path(p).name}: {why}" for p, why in zip(paths, reasons) if why]
    if errors:
        raise BadImage(f"{len(errors)} of {len(paths)} image(s) cannot be used: {'; '.join(errors)}")


def problems(work, items: list, desc: str) -> list:
    """work(item) for every item in threads, with a progress bar; each item's BadImage reason ('' when none)."""
    def one(item):
        try:
            work(item)
            return ""
        except BadImage as err:
            return str(err)

    with ThreadPoolExecutor(threads()) as pool:
        return list(tqdm(pool.map(one, items), total=len(items), desc=desc, delay=PROGRESS_AFTER_S))


@contextmanager
def reused_image_memory(workers: int):
    """Let Pillow keep freed image memory for reuse while decoding, then return to its own setting."""
    before = Image.core.get_blocks_max()
    Image.core.set_blocks_max(max(before, workers * BLOCKS_PER_THREAD))
    try:
        yield
    finally:
        Image.core.set_blocks_max(before)


def publish(target: Path, count: int, size: int, write) -> np.ndarray:
    """Fill a new (count, size, size) array with write(out), then move it into place whole; returned memory-mapped."""
    def fill_new(tmp):
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, size, size))
        write(out)
        out.flush()

    write_atomic(target, fill_new)
    return np.load(target, mmap_mode="r")


def copy_rows(out: np.ndarray, source: np.ndarray, rows, step=unchanged) -> None:
    """out[i] = step(source[rows[i]]), one row at a time, so no second array is held in memory."""
    for i, row in enumerate(rows):
        out[i] = step(np.array(source[row]))
