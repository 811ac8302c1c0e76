"""Item 3: feature extraction with the cache, plus three heads trained on the cached features, against
one plain pass of the frozen backbone over the same images.

The extractor is the pretrained chapter's (the backbone's own preprocessing, then the backbone), with
seeded random weights (none are downloaded); each head is the report's, trained with the chapter's
epoch-aware array pipeline for HEAD_EPOCHS epochs after reading the features back from the cache.
The goal compares this process's CPU seconds (other processes' load barely moves them); wall-clock
seconds are recorded beside them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Goal
from benchmarks.training_overhead import costs

BACKBONE, SIZE, IMAGES, BATCH, HEADS, HEAD_EPOCHS = "resnet50", 128, 384, 32, 3, 5


def extractor():
    """Preprocessing and backbone in one model, as cxrlib.machinery.transfer builds it."""
    import keras

    from cxrlib.science.models import backbones

    keras.utils.set_random_seed(0)
    base = backbones.backbone(BACKBONE, SIZE)
    return keras.Sequential([*backbones.preprocessing(backbones.spec(BACKBONE).preprocessing), base])


def backbone_pass(model, images) -> tuple:
    """(CPU, wall) seconds of one batched pass of the backbone over the images (after tracing it once)."""
    rgb = lambda batch: np.repeat(np.asarray(batch, np.float32)[..., None], 3, axis=-1)  # noqa: E731
    model(rgb(images[:BATCH]), training=False)

    def one_pass():
        for start in range(0, len(images), BATCH):
            np.asarray(model(rgb(images[start:start + BATCH]), training=False))
    return costs(one_pass)


def train_head(features, labels):
    """The report's head for the backbone, fitted on cached features."""
    import keras

    from cxrlib.science.data.pipeline import array_dataset, steps_per_epoch
    from cxrlib.science.models import backbones

    head = backbones.head(BACKBONE, features.shape[1:])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(array_dataset(features, labels, BATCH, shuffle=True, seed=0),
             steps_per_epoch=steps_per_epoch(len(labels), BATCH), epochs=HEAD_EPOCHS, verbose=0)


def run(work: Path) -> tuple:
    """(measurements, goals) of item 3."""
    from cxrlib.machinery.features import extract, feature_key

    os.environ["CXR_CACHE_DIR"] = str(work / "feature_cache")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (IMAGES, SIZE, SIZE), dtype=np.uint8)
    labels = rng.integers(0, 4, IMAGES)
    model = extractor()
    plain = backbone_pass(model, images)
    key = feature_key("benchmark", BACKBONE, SIZE, IMAGES, time.time_ns())  # a cold cache every run
    call = lambda batch: model(batch, training=False)  # noqa: E731
    extracted = costs(lambda: extract(call, images, key, BATCH, desc="benchmark features"))
    heads = costs(lambda: [train_head(extract(call, images, key, BATCH), labels) for _ in range(HEADS)])
    total = (extracted[0] + heads[0], extracted[1] + heads[1])
    measured = {"backbone": BACKBONE, "weights": "seeded random (no download)", "size": SIZE, "images": IMAGES,
                "batch": BATCH, "heads": HEADS, "head_epochs": HEAD_EPOCHS, "one_backbone_pass_cpu_s": plain[0],
                "one_backbone_pass_wall_s": plain[1], "extraction_cpu_s": extracted[0], "extraction_wall_s": extracted[1],
                "extraction_plus_heads_cpu_s": total[0], "extraction_plus_heads_wall_s": total[1]}
    return measured, [Goal(f"extraction + {HEADS} heads / one backbone pass (CPU time)", total[0] / plain[0], 1.3, "x",
                           at_most=True)]
