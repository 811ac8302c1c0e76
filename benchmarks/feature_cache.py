"""Item 3: feature extraction with the cache, plus three heads trained on the cached features, against
one plain pass of the frozen backbone over the same images.

The extractor is the pretrained chapter's (the backbone's own preprocessing, then the backbone), with
seeded random weights (none are downloaded); each head is the report's, trained with the chapter's
epoch-aware array pipeline for HEAD_EPOCHS epochs after reading the features back from the cache.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Goal

BACKBONE, SIZE, IMAGES, BATCH, HEADS, HEAD_EPOCHS = "resnet50", 128, 384, 32, 3, 5


def extractor():
    """Preprocessing and backbone in one model, as cxrlib.transfer builds it."""
    import keras

    from cxrlib.models import backbones

    keras.utils.set_random_seed(0)
    base = backbones.backbone(BACKBONE, SIZE)
    return keras.Sequential([*backbones.preprocessing(backbones.spec(BACKBONE).preprocessing), base])


def backbone_pass(model, images) -> float:
    """Seconds of one batched pass of the backbone over the images (after tracing it once)."""
    rgb = lambda batch: np.repeat(np.asarray(batch, np.float32)[..., None], 3, axis=-1)  # noqa: E731
    model(rgb(images[:BATCH]), training=False)
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        np.asarray(model(rgb(images[start:start + BATCH]), training=False))
    return time.perf_counter() - started


def train_head(features, labels):
    """The report's head for the backbone, fitted on cached features."""
    import keras

    from cxrlib.data.pipeline import array_dataset, steps_per_epoch
    from cxrlib.models import backbones

    head = backbones.head(BACKBONE, features.shape[1:])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(array_dataset(features, labels, BATCH, shuffle=True, seed=0),
             steps_per_epoch=steps_per_epoch(len(labels), BATCH), epochs=HEAD_EPOCHS, verbose=0)


def run(work: Path) -> tuple:
    """(measurements, goals) of item 3."""
    from cxrlib.features import extract, feature_key

    os.environ["CXR_CACHE_DIR"] = str(work / "feature_cache")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (IMAGES, SIZE, SIZE), dtype=np.uint8)
    labels = rng.integers(0, 4, IMAGES)
    model = extractor()
    plain = backbone_pass(model, images)
    key = feature_key("benchmark", BACKBONE, SIZE, IMAGES, time.time_ns())  # a cold cache every run
    call = lambda batch: model(batch, training=False)  # noqa: E731
    started = time.perf_counter()
    extract(call, images, key, BATCH, desc="benchmark features")
    extracted = time.perf_counter() - started
    for _ in range(HEADS):
        train_head(extract(call, images, key, BATCH), labels)
    total = time.perf_counter() - started
    measured = {"backbone": BACKBONE, "weights": "seeded random (no download)", "size": SIZE, "images": IMAGES,
                "batch": BATCH, "heads": HEADS, "head_epochs": HEAD_EPOCHS, "one_backbone_pass_s": plain,
                "extraction_s": extracted, "extraction_plus_heads_s": total}
    return measured, [Goal(f"extraction + {HEADS} heads / one backbone pass", total / plain, 1.3, "x", at_most=True)]
