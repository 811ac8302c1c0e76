"""Item 4: the first touch of a partial NIH download, the way a chapter of the full profile touches it.

Each folder (benchmarks.nih_folder) holds NIH's real 112,120-row label file and `count` of its images as
1,024 px PNGs, in NIH's layout; the other rows are images not downloaded. Each count runs in a fresh process
with an empty cache (measure), calling what a chapter calls: cxrlib.machinery.inputs.load_for with the full profile's
settings (fractions 0.8/0.1/0.1, the report's caps, training_set "more", on_bad_image "fail", image_size
250 px). That is what a real first touch of NIH's folder does: the full profile is the one meant for NIH's
images, and the caps are the report's data set (13,873 images), so at 16,000 images present about that
many are used and the other present ones are hashed but never decoded. load_for reads the label file,
counts and skips the missing images, hashes every present listed image and reads its header (no decode),
splits by patient, caps, then decodes each image a split uses once (cxrlib.machinery.inputs.images.first_decode:
checked and resized to 250 px in one decode, cached). Then the chapter's arrays are read back from the
cache (every byte, to a checksum). Below MIN_PER_SPLIT_FROM images, too few for the profile's ten images
of each class in each split, min_per_split is 1 (recorded in the results); nothing else is changed.

Goals, measured in the same run:
- ready to train: from an empty cache until load_for returns with every used image decoded and cached, at
  the largest count (16,000 by default): at most READY_GOAL_S (3 min on the 2-core machine);
- first decode / Keras: our first decode's images per second (time inside first_decode, in the real run at
  the smallest count) against keras.utils.image_dataset_from_directory (grey, 250 px, one pass) over
  exactly the images that run decoded, as hard links in Keras's class folders (benchmarks.pipeline_speed's
  keras_view and keras_rate): at least 1;
- each used image decoded once by load_for (decodes counted at decode.decode_bytes, where every pixel is
  decoded), and none on the cached reload;
- cost per present image at the largest count within LINEAR_SLACK of the smallest's (when two counts run);
- peak resident memory within the cache's size plus 1 GiB at each count.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import Goal
from benchmarks.nih_folder import make_nih_folder

COUNTS = (4000, 16000)
PROFILE = "full"
MIN_PER_SPLIT_FROM = 2000
READY_GOAL_S = 180
LINEAR_SLACK = 1.5
KERAS_BATCH = 16
GIB = 1 << 30


class Timed:
    """Wraps a function: counts its calls' seconds and, with count_of, the items they handle (thread-safe)."""

    def __init__(self, function, count_of=None):
        self.function, self.count_of = function, count_of
        self.seconds, self.items, self.lock = 0.0, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            with self.lock:
                self.seconds += time.perf_counter() - started
                self.items += self.count_of(*args) if self.count_of else 1


def measure(folder: Path, cache: Path) -> dict:
    """Time a full-profile chapter's first touch of one folder from an empty cache (runs in a child process)."""
    import numpy as np

    os.environ["CXR_CACHE_DIR"] = str(cache)
    import cxrlib.machinery.inputs as data_layer
    from cxrlib.core.manifest import profile_settings
    from cxrlib.machinery.inputs import decode, images

    settings = profile_settings(PROFILE)
    present = sum(1 for _ in folder.glob("images_*/images/*.png"))
    overrides = {"min_per_split": 1} if present < MIN_PER_SPLIT_FROM else {}
    settings.update(overrides)
    size = settings["image_size"]
    # Probes on the functions load_for calls by name; they time and count, and change nothing.
    reading = data_layer.read_source = Timed(data_layer.read_source)
    decoding = images.first_decode = Timed(images.first_decode, lambda paths, *_: len(paths))
    decodes = decode.decode_bytes = Timed(decode.decode_bytes)

    started = time.perf_counter()
    data = data_layer.load_for(folder, settings)
    ready = time.perf_counter() - started
    decoded_in_load = decodes.items

    started, checksum = time.perf_counter(), 0
    for split in data_layer.SPLITS:
        checksum += int(np.asarray(data.images(split, size)).sum(dtype=np.uint64))
    reload = time.perf_counter() - started

    drops = data.drops
    cache_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    return {"profile": PROFILE, "overrides": overrides, "size": size, "rows_listed": drops.rows_read,
            "images_present": present, "missing_counted": drops.count("missing image"),
            "dropped": {r: len(v) for r, v in drops.dropped.items()},
            "images_hashed": len(data.source.table), "images_used": len(data.table),
            "images_first_decoded": decoding.items, "decodes_in_load": decoded_in_load,
            "decodes_in_reload": decodes.items - decoded_in_load,
            "read_hash_and_headers_s": reading.seconds, "first_decode_s": decoding.seconds,
            "split_caps_and_checks_s": ready - reading.seconds - decoding.seconds, "ready_s": ready,
            "cached_reload_s": reload, "total_s": ready + reload,
            "first_decode_img_per_s": decoding.items / decoding.seconds if decoding.seconds else 0.0,
            "peak_rss_bytes": peak_rss(), "cache_bytes": cache_bytes, "checksum": checksum,
            "drop_line": drops.line(), "used": data.table[["Image Index", "Finding Labels"]].values.tolist()}


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which (unlike ru_maxrss) does not carry over
    the parent's memory from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_count(folder: Path, work: Path) -> dict:
    """measure() in a fresh process, so peak memory and caches belong to this folder alone."""
    cache = work / f"cache_{folder.name}"
    shutil.rmtree(cache, ignore_errors=True)
    code = ("import json, sys; from pathlib import Path; from benchmarks.data_scale import measure; "
            "print(json.dumps(measure(Path(sys.argv[1]), Path(sys.argv[2]))))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(cache)], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode:
        raise RuntimeError(f"data-layer benchmark on {folder} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def keras_on(folder: Path, used, work: Path, size: int) -> dict:
    """Keras's directory loader over exactly these images (hard links in its class folders), one pass."""
    from benchmarks.pipeline_speed import keras_rate, keras_view

    names, labels = zip(*used)
    view = keras_view(folder, names, labels, work / f"keras_view_{folder.name}")
    try:
        rate = keras_rate(view, size, KERAS_BATCH)
    finally:
        shutil.rmtree(view, ignore_errors=True)
    return {"folder": folder.name, "images": len(names), "size": size, "batch": KERAS_BATCH, "img_per_s": rate}


def run(work: Path, counts=COUNTS, keep: bool = False) -> tuple:
    """(measurements, goals) of item 4; the folders are removed afterwards unless keep."""
    counts = sorted(set(counts))
    largest, smallest = counts[-1], counts[0]
    started = time.perf_counter()
    big = make_nih_folder(work / f"nih_{largest}", largest)
    generated = time.perf_counter() - started
    rows, keras = {}, None
    for count in counts:
        folder = big if count == largest else make_nih_folder(work / f"nih_{count}", count, link_from=big)
        rows[count] = run_count(folder, work)
        used = rows[count].pop("used")
        print(f"  {count:>6} images present: " + ", ".join(
            f"{k} {v:.1f}" for k, v in rows[count].items() if k.endswith("_s")), flush=True)
        print(f"         {rows[count]['drop_line']}", flush=True)
        if count == smallest:
            keras = keras_on(folder, used, work, rows[count]["size"])
            print(f"         Keras's directory loader on the same {keras['images']} images: "
                  f"{keras['img_per_s']:.1f} img/s", flush=True)
        if not keep and folder != big:
            shutil.rmtree(folder, ignore_errors=True)
    if not keep:
        shutil.rmtree(big, ignore_errors=True)
    small, large = rows[smallest], rows[largest]
    goals = [Goal(f"ready to train, {largest:,} of {large['rows_listed']:,} images present (full profile)",
                  large["ready_s"] / 60, READY_GOAL_S / 60, "min", at_most=True),
             Goal(f"first decode / Keras directory loader, same {keras['images']:,} images",
                  small["first_decode_img_per_s"] / keras["img_per_s"], 1.0, "x")]
    for count, r in rows.items():
        goals += [Goal(f"decodes per used image in load_for, {count:,} images",
                       r["decodes_in_load"] / max(r["images_used"], 1), 1.0, "x", at_most=True),
                  Goal(f"decodes on the cached reload, {count:,} images", r["decodes_in_reload"], 0, "decodes",
                       at_most=True)]
    if largest != smallest:
        growth = (large["total_s"] / large["images_present"]) / (small["total_s"] / small["images_present"])
        goals.append(Goal(f"cost per present image, {largest:,} / {smallest:,} images", growth, LINEAR_SLACK, "x",
                          at_most=True))
    goals += [Goal(f"peak memory over cache size, {count:,} images", (r["peak_rss_bytes"] - r["cache_bytes"]) / GIB,
                   1.0, "GiB", at_most=True) for count, r in rows.items()]
    return {"generation_s": generated, "profile": PROFILE, "keras": keras, "counts": rows}, goals
