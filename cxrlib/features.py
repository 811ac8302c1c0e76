"""Frozen-backbone features, computed once per backbone, weights, input size and split, then cached."""
from __future__ import annotations

import hashlib
import os

import numpy as np
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.config import cache_dir


def feature_key(*parts) -> str:
    """A short, stable name for one cached feature array: its parts, how the images were decoded and the
    library code, so features of an older decode or older code are never served."""
    from cxrlib import identity
    from cxrlib.data.decode import DECODE_VERSION

    made_by = (f"decode {DECODE_VERSION}", f"code {identity.code_digest()}")
    return hashlib.sha256("|".join(map(str, (*parts, *made_by))).encode()).hexdigest()[:20]


def extract(extractor, images: np.ndarray, key: str, batch_size: int = 32, desc: str = "features") -> np.ndarray:
    """extractor(batch of RGB float images) for every image, with a progress bar; cached under key."""
    target = cache_dir() / "features" / f"{key}.npy"
    if target.is_file():
        return np.load(target)
    batches = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        gray = np.asarray(images[start:start + batch_size], np.float32)
        batches.append(np.asarray(extractor(np.repeat(gray[..., None], 3, axis=-1))))
    features = np.concatenate(batches)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, features)
    os.replace(partial, target)
    return features
