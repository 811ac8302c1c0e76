"""Frozen-backbone features, computed once per backbone, weights, input size and split, then cached."""
from __future__ import annotations

import hashlib

import numpy as np
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.files import write_atomic
from cxrlib.machinery import identity
from cxrlib.machinery.inputs import decode


def feature_key(*parts) -> str:
    """A short, stable name for one cached feature array: its parts, how the images were decoded and the
    library code, so features of an older decode or older code are never served."""
    made_by = (f"decode {decode.DECODE_VERSION}", f"code {identity.code_digest()}")
    return hashlib.sha256("|".join(map(str, (*parts, *made_by))).encode()).hexdigest()[:20]


def extract(extractor, images: np.ndarray, key: str, batch_size: int = 32, desc: str = "features") -> np.ndarray:
    """extractor(batch of RGB float images) for every image, with a progress bar; cached under key."""
    target = cache_dir() / "features" / f"{key}.npy"
    if target.is_file():
        return np.load(target)
    batches = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", delay=PROGRESS_AFTER_S):
        gray = np.asarray(images[start:start + batch_size], np.float32)
        batches.append(np.asarray(extractor(np.repeat(gray[..., None], 3, axis=-1))))
    features = np.concatenate(batches)
    write_atomic(target, lambda tmp: np.save(tmp, features))
    return features
