"""Training and inference throughput of the report's from-scratch networks, on whatever device Keras sees.

    python benchmarks/train_speed.py [--sizes 250:227 128:113] [--batch 16] [--steps 20]

Works with any Keras 3 backend (KERAS_BACKEND=tensorflow, jax or torch). Prints one row per
(model, size): images per second for training and inference, and the seconds one epoch of the
report's 11,143 training images would take. Benchmarks time things; tests never do.
"""
from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

from cxrlib.science.models import count_params, fused_net, second_cnn

REPORT_TRAIN_IMAGES = 11_143


def timed(step, steps: int) -> float:
    """Median seconds of one call after two warm-up calls (compilation stays out of the numbers)."""
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(name: str, build, image_size: int, resize_to: int, batch: int, steps: int) -> dict:
    """Train-step and predict-step throughput of one model at one size, on random 8-bit grey images."""
    model = build(image_size=image_size, resize_to=resize_to)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, image_size, image_size, 1), dtype=np.uint8)  # what make_dataset yields
    y = rng.integers(0, 4, batch)
    train = timed(lambda: model.train_on_batch(x, y), steps)
    infer = timed(lambda: model.predict_on_batch(x), steps)
    probs = np.asarray(model.predict_on_batch(x))
    loss = float(model.train_on_batch(x, y))
    if probs.dtype != np.float32 or not np.isfinite(loss) or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise RuntimeError(f"{name}: bad output (dtype {probs.dtype}, loss {loss})")
    return {"model": name, "input": image_size, "resized": resize_to, "batch": batch,
            "params": count_params(model)["total"], "train img/s": round(batch / train, 1),
            "infer img/s": round(batch / infer, 1), "epoch s (11,143 imgs)": round(REPORT_TRAIN_IMAGES / (batch / train), 1)}


def main(argv=None):
    """Measure every model at every requested size and print a table (and JSON lines)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["250:227", "128:113"], help="input:resized pairs")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute (a GPU feature)")
    args = parser.parse_args(argv)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, policy {keras.mixed_precision.global_policy().name}")
    rows = []
    for pair in args.sizes:
        image_size, resize_to = map(int, pair.split(":"))
        for name, build in (("fused", fused_net), ("second_cnn", second_cnn)):
            rows.append(measure(name, build, image_size, resize_to, args.batch, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    header = list(rows[0])
    print("\n" + " | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))


if __name__ == "__main__":
    main()
