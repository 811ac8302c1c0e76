"""Item 4: the data layer at the report's scale and beyond, on synthetic NIH-format folders of 1k, 4k, 16k images.

Each size runs in its own process with an empty cache: reading the label file and checking every image
(resolve_source), the patient split, the first decode of every kept image at SIZE px into the cache, and a
cached reload that reads every byte back; then the process's peak resident memory. Goals: cost per
image at the largest size within LINEAR_SLACK of the smallest's, peak memory within the cache's size plus
1 GiB, and the 16k run under 15 minutes.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Goal
from benchmarks.nih_folder import make_nih_folder

COUNTS = (1000, 4000, 16000)
SIZE = 250
LINEAR_SLACK = 1.5
GIB = 1 << 30


def measure(folder: Path, cache: Path) -> dict:
    """Time each stage of the data layer on one folder with an empty cache (runs in a child process)."""
    import numpy as np

    os.environ["CXR_CACHE_DIR"] = str(cache)
    from cxrlib.data.images import load_images
    from cxrlib.data.sources import resolve_source
    from cxrlib.data.splits import split_patients

    times, started = {}, time.perf_counter()
    source = resolve_source(folder)
    times["metadata_and_check_s"] = time.perf_counter() - started
    started = time.perf_counter()
    table = split_patients(source.table, (0.8, 0.1, 0.1), 42)
    times["split_s"] = time.perf_counter() - started
    paths = [source.paths[name] for name in table["Image Index"]]
    started = time.perf_counter()
    load_images(paths, SIZE, desc="benchmark")
    times["first_decode_s"] = time.perf_counter() - started
    started = time.perf_counter()
    checksum = int(np.asarray(load_images(paths, SIZE, desc="benchmark")).sum(dtype=np.uint64))
    times["cached_reload_s"] = time.perf_counter() - started
    cache_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    peak = peak_rss()
    listed = sum(1 for _ in open(folder / "Data_Entry_2017.csv")) - 1
    return {"images_listed": listed, "images_kept": len(paths), "size": SIZE, **times, "total_s": sum(times.values()),
            "peak_rss_bytes": peak, "cache_bytes": cache_bytes, "checksum": checksum}


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which (unlike ru_maxrss) does not carry over
    the parent's memory from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_size(folder: Path, work: Path) -> dict:
    """measure() in a fresh process, so peak memory and caches belong to this size alone."""
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


def run(work: Path, counts=COUNTS, keep: bool = False) -> tuple:
    """(measurements, goals) of item 4; the folders are removed afterwards unless keep."""
    largest = max(counts)
    started = time.perf_counter()
    big = make_nih_folder(work / f"nih_{largest}", largest)
    generated = time.perf_counter() - started
    rows = {}
    for count in sorted(counts):
        folder = big if count == largest else make_nih_folder(work / f"nih_{count}", count, link_from=big)
        rows[count] = run_size(folder, work)
        print(f"  {count:>6} images: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[count].items() if k.endswith("_s")),
              flush=True)
        if not keep and folder != big and count != 1000:  # item 1 reuses the 1,000-image folder
            shutil.rmtree(folder, ignore_errors=True)
    if not keep:
        shutil.rmtree(big, ignore_errors=True)
    small, large = rows[min(counts)], rows[largest]
    growth = (large["total_s"] / large["images_listed"]) / (small["total_s"] / small["images_listed"])
    goals = [Goal(f"cost per image, {largest:,} / {min(counts):,} images", growth, LINEAR_SLACK, "x", at_most=True),
             Goal(f"{largest:,}-image run", large["total_s"] / 60, 15, "min", at_most=True)]
    goals += [Goal(f"peak memory over cache size, {count:,} images", (r["peak_rss_bytes"] - r["cache_bytes"]) / GIB,
                   1.0, "GiB", at_most=True) for count, r in rows.items()]
    return {"generation_s": generated, "sizes": rows}, goals
