"""Shared pieces of the benchmarks: the machine's description, goal lines and the results file."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Goal:
    """One measured ratio (or value) beside the goal it must meet."""

    name: str
    value: float
    goal: float
    unit: str
    at_most: bool = False  # the goal is an upper bound (e.g. overhead) rather than a lower one

    @property
    def met(self) -> bool:
        """Whether the measurement meets its goal."""
        return self.value <= self.goal if self.at_most else self.value >= self.goal

    def line(self) -> str:
        """One printed line: value, goal, verdict."""
        sign = "<=" if self.at_most else ">="
        verdict = "ok" if self.met else "MISSED"
        return f"  {self.name}: {self.value:,.3g} {self.unit} (goal {sign} {self.goal:,.3g}) {verdict}"


def machine() -> dict:
    """CPU, cores, memory, load and library versions: what every number depends on."""
    import keras
    import tensorflow as tf

    model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 1024 for line in _read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal")), None)
    return {"cpu": model, "cores": os.cpu_count(), "memory_mib": memory,
            "load_average_at_start": os.getloadavg(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def _read(path: str) -> str:
    """A /proc file's text, or '' where there is none."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def timed(call, repeats: int = 1) -> float:
    """Smallest wall-clock seconds of `repeats` calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def write_results(name: str, payload: dict, goals) -> Path:
    """benchmarks/results/<name>.json with the machine, the measurements and every goal's verdict."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {**payload, "goals": [{**asdict(g), "met": g.met} for g in goals]}
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return path
