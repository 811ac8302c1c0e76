"""Decode and resize each image once, then keep the result on disk for every later run."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from cxrlib.config import cache_dir
from cxrlib.data.errors import DataError

# Decoding a few hundred images takes a second; a progress bar only helps beyond that.
PROGRESS_FROM = 1000


def decode(path: Path, size: int) -> np.ndarray:
    """8-bit grayscale at size x size; the models add the three channels themselves."""
    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            if gray.size != (size, size):
                gray = gray.resize((size, size), Image.BILINEAR)
            return np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot decode image {Path(path).name}: {err}") from err


TRANSFORMS = {}  # name -> function(uint8 image) -> uint8 image, registered by cxrlib.preprocessing


def cache_key(paths, size: int, transform=None) -> str:
    """Names, file sizes, the target size and the transform identify a cached array."""
    digest = hashlib.sha256(f"{size}:{transform}".encode())
    for path in paths:
        digest.update(f"{Path(path).name}:{Path(path).stat().st_size};".encode())
    return digest.hexdigest()[:20]


def load_images(paths, size: int, desc: str = "decoding", transform=None) -> np.ndarray:
    """(N, size, size) uint8, decoded in threads the first time and memory-mapped afterwards.

    transform names a registered per-image function (e.g. "otsu") applied after decoding.
    """
    paths = [Path(p) for p in paths]
    if transform:
        import cxrlib.preprocessing  # noqa: F401  (registers the transforms)
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(f"unknown image transform {transform!r}; known: {', '.join(TRANSFORMS)}")
    step = TRANSFORMS[transform] if transform else (lambda image: image)
    target = cache_dir() / "images" / f"{cache_key(paths, size, transform)}_{size}.npy"
    if target.is_file():
        return np.load(target, mmap_mode="r")
    target.parent.mkdir(parents=True, exist_ok=True)
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        images = list(tqdm(pool.map(lambda p: step(decode(p, size)), paths), total=len(paths),
                           desc=f"{desc} {len(paths)} images at {size}px",
                           disable=len(paths) < PROGRESS_FROM))
    array = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    partial = target.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, array)
    os.replace(partial, target)
    return np.load(target, mmap_mode="r")
