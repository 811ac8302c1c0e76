"""Decode each image once, resize it and cache the result: the arrays every split is read from.

The first decode of an image both checks it and resizes it (first_decode), and only images a split uses are
decoded; how one file is decoded and checked is cxrlib.machinery.inputs.decode's.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.files import write_atomic
from cxrlib.machinery.inputs import decode as decoder
from cxrlib.machinery.inputs.content import content_hashes, threads
from cxrlib.machinery.inputs.decode import DECODE_VERSION, BadImage, resized
from cxrlib.science.otsu import transform_step, unchanged

# Freed image memory Pillow keeps for reuse per decoding thread while decoding many images (a decoded
# image and the steps of its resize), so each image does not pay the page faults of fresh memory.
BLOCKS_PER_THREAD = 8


def cache_key(paths, size: int, transform=None, harmonise_to=None) -> str:
    """The images' content hashes, the target size, the harmonised size and the transform identify an array."""
    digest = hashlib.sha256(f"{DECODE_VERSION}:{size}:{transform}:{harmonise_to}".encode())
    for sha in content_hashes(paths):
        digest.update(f"{sha};".encode())
    return digest.hexdigest()[:20]


def cache_file(paths, size: int, transform=None, harmonise_to=None) -> Path:
    """Where the array of these images at this size (harmonised, transformed) is cached."""
    return cache_dir() / "images" / f"{cache_key(paths, size, transform, harmonise_to)}_{size}.npy"


@contextmanager
def reused_image_memory(workers: int):
    """Let Pillow keep freed image memory for reuse while decoding, then return to its own setting."""
    before = Image.core.get_blocks_max()
    Image.core.set_blocks_max(max(before, workers * BLOCKS_PER_THREAD))
    try:
        yield
    finally:
        Image.core.set_blocks_max(before)


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


def decode_into(out: np.ndarray, paths, size: int, step, harmonise_to=None, desc: str = "decoding") -> np.ndarray:
    """fill, with every unusable image named in one error."""
    reasons = fill(out, paths, size, step, harmonise_to, desc)
    errors = [f"{Path(p).name}: {why}" for p, why in zip(paths, reasons) if why]
    if errors:
        raise BadImage(f"{len(errors)} of {len(paths)} image(s) cannot be used: {'; '.join(errors)}")
    return out


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


def load_images(paths, size: int, desc: str = "decoding", transform=None, harmonise_to=None) -> np.ndarray:
    """(N, size, size) uint8, decoded in threads the first time and memory-mapped afterwards.

    transform names a registered per-image function (e.g. "otsu") applied after decoding; it is applied to
    the cached untransformed array when there is one, so a transform decodes nothing again. harmonise_to
    first brings every larger image down to that many pixels a side.
    """
    paths = [Path(p) for p in paths]
    step = transform_step(transform)
    target = cache_file(paths, size, transform, harmonise_to)
    if target.is_file():
        return np.load(target, mmap_mode="r")
    plain = cache_file(paths, size, None, harmonise_to) if transform else None
    if plain is not None and plain.is_file():
        decoded = np.load(plain, mmap_mode="r")
        return publish(target, len(paths), size, lambda out: copy_rows(out, decoded, range(len(decoded)), step))
    return publish(target, len(paths), size, lambda out: decode_into(out, paths, size, step, harmonise_to, desc))


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
