"""Item 1: images per second out of our tf.data pipeline against Keras's image_dataset_from_directory.

Both read the same NIH-sized (1,024 px) 8-bit PNGs and deliver size x size batches. Keras decodes
and resizes every PNG on every epoch; ours decodes once into the image cache, then serves 8-bit grey
batches in memory (in-graph) or from the cache's memory map in batch-sized reads (streamed, the path
for arrays over IN_GRAPH_LIMIT). Our steady state is measured on the decoded images repeated to
PIPELINE_IMAGES (a training set's size; the pipeline's cost does not depend on pixel values).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Goal
from benchmarks.nih_folder import make_nih_folder, present_rows
from cxrlib.core.config import CLASSES

KERAS_IMAGES = 256
PIPELINE_IMAGES = 8192
EPOCHS = 3


def keras_view(folder: Path, names, labels, target: Path) -> Path:
    """These images as Keras's directory layout (one sub-folder per label), as hard links made afresh."""
    paths = {p.name: p for p in folder.glob("images_*/images/*.png")}
    shutil.rmtree(target, ignore_errors=True)
    for name, label in zip(names, labels):
        link = target / label.replace("|", "_") / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(paths[name], link)
    return target


def keras_rate(view: Path, size: int, batch: int) -> float:
    """Images per second of one pass of image_dataset_from_directory (grey, resized, shuffled)."""
    import keras

    ds = keras.utils.image_dataset_from_directory(view, color_mode="grayscale", image_size=(size, size),
                                                  batch_size=batch, shuffle=True, seed=0, verbose=False)
    started, seen = time.perf_counter(), 0
    for x, _ in ds:
        seen += int(x.shape[0])
    return seen / (time.perf_counter() - started)


def pipeline_rate(images, labels, batch: int, epochs: int = EPOCHS) -> float:
    """Images per second of make_dataset (shuffled, epoch-aware) over `epochs` epochs after a warm-up."""
    from cxrlib.science.data.pipeline import make_dataset, steps_per_epoch

    steps = steps_per_epoch(len(images), batch)
    iterator = iter(make_dataset(images, labels, batch, shuffle=True, seed=0))
    for _ in range(20):
        next(iterator)
    started, seen = time.perf_counter(), 0
    for _ in range(epochs * steps):
        x, _ = next(iterator)
        seen += int(x.shape[0])
    return seen / (time.perf_counter() - started)


def run(work: Path, size: int = 250, batch: int = 16) -> tuple:
    """(measurements, goals) of item 1."""
    from cxrlib.science.data import pipeline
    from cxrlib.machinery.inputs.images import load_images

    folder = make_nih_folder(work / "nih_1000", 1000)
    table = present_rows(folder).iloc[:KERAS_IMAGES]
    view = keras_view(folder, table["Image Index"], table["Finding Labels"], work / "keras_view")
    keras_ips = keras_rate(view, size, batch)
    paths = sorted(view.glob("*/*.png"))
    started = time.perf_counter()
    decoded = np.asarray(load_images(paths, size, desc="benchmark"))
    first_decode = len(paths) / (time.perf_counter() - started)
    images = np.resize(decoded, (PIPELINE_IMAGES, size, size))
    labels = np.arange(PIPELINE_IMAGES) % len(CLASSES)
    in_graph = pipeline_rate(images, labels, batch)
    mapped_file = work / "streamed.npy"
    np.save(mapped_file, images)
    mapped = np.load(mapped_file, mmap_mode="r")
    limit, pipeline.IN_GRAPH_LIMIT = pipeline.IN_GRAPH_LIMIT, 0  # force the streamed path for this array
    try:
        streamed = pipeline_rate(mapped, labels, batch)
    finally:
        pipeline.IN_GRAPH_LIMIT = limit
        mapped_file.unlink(missing_ok=True)
    measured = {"size": size, "batch": batch, "keras_images": len(paths), "pipeline_images": PIPELINE_IMAGES,
                "keras_directory_img_per_s": keras_ips, "our_first_decode_img_per_s": first_decode,
                "in_graph_img_per_s": in_graph, "streamed_img_per_s": streamed}
    goals = [Goal("in-graph pipeline", in_graph, 10_000, "img/s"),
             Goal("streamed pipeline", streamed, 10_000, "img/s"),
             Goal("in-graph / Keras directory loader", in_graph / keras_ips, 50, "x"),
             Goal("streamed / Keras directory loader", streamed / keras_ips, 50, "x")]
    return measured, goals
