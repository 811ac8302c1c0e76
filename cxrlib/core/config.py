"""Project-wide constants and paths (the profiles' settings: cxrlib.core.manifest)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Class order used everywhere: index i of a probability vector is CLASSES[i].
CLASSES = ("No Finding", "Effusion", "Infiltration", "Atelectasis")
NO_FINDING = 0

# The command as the README installs it, so that every command a page or a message gives works from the project folder.
CXR = ".venv/bin/cxr"

# Long work shows a progress bar (on stderr, in the chapter's log) once it has run this many seconds (tqdm's delay).
PROGRESS_AFTER_S = 2.0

# The report's per-split class counts (section 1.2), used as caps in the full profile.
REPORT_COUNTS = {
    "train": {"No Finding": 3240, "Effusion": 2279, "Infiltration": 3240, "Atelectasis": 2384},
    "val": {"No Finding": 360, "Effusion": 283, "Infiltration": 360, "Atelectasis": 289},
    "test": {"No Finding": 400, "Effusion": 314, "Infiltration": 400, "Atelectasis": 324},
}
# The report's first, smaller training set (section 2.4) had 7,996 images.
REPORT_FIRST_TRAIN_SIZE = 7996


def cache_dir() -> Path:
    """Decoded images and features are expensive; keep them out of git but across runs."""
    path = Path(os.environ.get("CXR_CACHE_DIR", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def notebooks_dir() -> Path:
    """The chapters' source notebooks (tests point it at notebooks of their own)."""
    return Path(os.environ.get("CXR_NOTEBOOKS_DIR", REPO_ROOT / "notebooks"))


def runs_dir() -> Path:
    """Chapters hand results to each other through this folder."""
    return Path(os.environ.get("CXR_RUNS_DIR", REPO_ROOT / "runs"))


def kept_budget() -> float:
    """Bytes of replaced results kept per profile (runs/<profile>/.kept), 3 GB unless CXR_KEPT_GB says otherwise."""
    return float(os.environ.get("CXR_KEPT_GB", 3)) * 1e9
