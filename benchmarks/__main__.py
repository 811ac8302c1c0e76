"""The benchmark suite: `python -m benchmarks` (or `make bench`).

    python -m benchmarks [--only pipeline training features data] [--work DIR] [--counts 4000 16000]
                         [--note TEXT] [--keep-data]

Runs, side by side in one process on this machine: (1) our tf.data pipeline against Keras's directory
loader, (2) the training helper against a bare model.fit, (3) feature extraction with the cache against
one backbone pass, (4) the data layer's first touch of a partial NIH download (NIH's 112,120-row label file
with 4,000 and 16,000 of its images present, --counts): ready to train, and its first decode against
Keras's directory loader on the same images. Prints each ratio beside its goal and writes
benchmarks/results/bench_<item>.json with the machine's description.
The GPU throughput table (item 5) is benchmarks/train_speed.py, run by hand on a GPU machine.
Exits with status 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import common  # noqa: E402

ITEMS = ("pipeline", "training", "features", "data")


def run_item(name: str, work: Path, args):
    """(measurements, goals) of one item."""
    if name == "pipeline":
        from benchmarks import pipeline_speed
        return pipeline_speed.run(work)
    if name == "training":
        from benchmarks import training_overhead
        return training_overhead.run(work)
    if name == "features":
        from benchmarks import feature_cache
        return feature_cache.run(work)
    from benchmarks import data_scale
    return data_scale.run(work, tuple(args.counts), keep=args.keep_data)


def main(argv=None) -> int:
    """Run the chosen items, print every goal line and write one JSON file per item."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=ITEMS, default=list(ITEMS))
    parser.add_argument("--work", default=os.environ.get("CXR_BENCH_DIR", str(Path(".cache") / "bench")),
                        help="scratch folder for the synthetic NIH folders, Keras views and caches")
    parser.add_argument("--counts", nargs="+", type=int, default=[4000, 16000],
                        help="data item: images present beside NIH's full label file, one folder each; the "
                             "largest is timed against the ready-to-train goal, the smallest against Keras")
    parser.add_argument("--note", default="", help="added to the machine description (e.g. other load)")
    parser.add_argument("--keep-data", action="store_true", help="keep the synthetic folders for the next run")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    machine = {**common.machine(), "note": args.note}
    print(f"machine: {machine}", flush=True)
    missed, started = [], time.perf_counter()
    for name in args.only:
        began = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        measured, goals = run_item(name, work, args)
        seconds = time.perf_counter() - began
        for goal in goals:
            print(goal.line(), flush=True)
        missed += [g.name for g in goals if not g.met]
        path = common.write_results(f"bench_{name}", {"item": name, "machine": machine, "seconds": seconds,
                                                      "measured": measured}, goals)
        print(f"[{name}] {seconds:.0f} s, written to {path}", flush=True)
    print(f"benchmarks: {time.perf_counter() - started:.0f} s in all; "
          + (f"MISSED: {', '.join(missed)}" if missed else "every goal met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
