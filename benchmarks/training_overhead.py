"""Item 2: our training helper (cxrlib.science.training.train) against a bare model.fit on the same arrays.

Both compile the same freshly seeded second CNN with Adam and fit the same epoch-aware pipeline with
validation; the helper adds the report's callbacks, best-model checkpointing, a per-epoch backup for
resuming and the history. The goal compares this process's CPU seconds (user + system), which other
processes' load barely moves; wall-clock seconds are recorded beside them. Runs alternate and each side
keeps its smallest.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import resource
import time

from benchmarks.common import Goal

IMAGE_SIZE, RESIZE_TO = 96, 87  # the smoke profile's sizes, so the whole suite stays within minutes
TRAIN_IMAGES, VAL_IMAGES, BATCH, EPOCHS, ROUNDS = 256, 64, 16, 3, 2


def arrays(seed: int = 0):
    """Random 8-bit grey training and validation images with labels (the timing ignores content)."""
    rng = np.random.default_rng(seed)
    shape = (IMAGE_SIZE, IMAGE_SIZE)
    return (rng.integers(0, 256, (TRAIN_IMAGES, *shape), dtype=np.uint8), rng.integers(0, 4, TRAIN_IMAGES),
            rng.integers(0, 256, (VAL_IMAGES, *shape), dtype=np.uint8), rng.integers(0, 4, VAL_IMAGES))


def fresh_model():
    """The second CNN at the cpu profile's size, seeded."""
    import keras

    from cxrlib.science.models import second_cnn

    keras.utils.set_random_seed(0)
    return second_cnn(image_size=IMAGE_SIZE, resize_to=RESIZE_TO)


def bare_fit(data):
    """model.fit with nothing but validation."""
    import keras

    from cxrlib.science.data.pipeline import make_dataset, steps_per_epoch

    x, y, vx, vy = data
    model = fresh_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(make_dataset(x, y, BATCH, shuffle=True, seed=0), steps_per_epoch=steps_per_epoch(len(x), BATCH),
              validation_data=make_dataset(vx, vy, BATCH), epochs=EPOCHS, verbose=0)


def helper_fit(data):
    """cxrlib.science.training.train in a throw-away folder."""
    from cxrlib.science.data.pipeline import make_dataset, steps_per_epoch
    from cxrlib.science.training import train

    x, y, vx, vy = data
    folder = Path(tempfile.mkdtemp(prefix="cxr-bench-train-"))
    try:
        train(fresh_model(), lambda start: (make_dataset(x, y, BATCH, shuffle=True, seed=0, start_epoch=start),
                                            steps_per_epoch(len(x), BATCH)),
              make_dataset(vx, vy, BATCH), folder, epochs=EPOCHS, patience=EPOCHS, name="benchmark",
              identity="benchmark")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def costs(call) -> tuple:
    """(CPU seconds of this process, wall-clock seconds) of one call."""
    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    cpu_start, wall_start = cpu(), time.perf_counter()
    call()
    return cpu() - cpu_start, time.perf_counter() - wall_start


def run(work: Path) -> tuple:
    """(measurements, goals) of item 2."""
    data = arrays()
    bare, helper = (float("inf"), float("inf")), (float("inf"), float("inf"))
    for _ in range(ROUNDS):
        bare = min(bare, costs(lambda: bare_fit(data)))
        helper = min(helper, costs(lambda: helper_fit(data)))
    overhead = helper[0] / bare[0] - 1
    measured = {"model": "second_cnn", "image_size": IMAGE_SIZE, "resize_to": RESIZE_TO, "train_images": TRAIN_IMAGES,
                "val_images": VAL_IMAGES, "batch": BATCH, "epochs": EPOCHS, "rounds": ROUNDS,
                "bare_fit_cpu_s": bare[0], "helper_cpu_s": helper[0], "bare_fit_wall_s": bare[1],
                "helper_wall_s": helper[1], "overhead_cpu": overhead, "overhead_wall": helper[1] / bare[1] - 1}
    return measured, [Goal("training helper overhead over bare model.fit (CPU time)", 100 * overhead, 5, "%",
                           at_most=True)]
