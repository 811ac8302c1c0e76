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

# What each profile is for, in words for the index page's profile table.
PURPOSE = {"smoke": "continuous integration: checks that everything runs, in minutes",
           "cpu": "a laptop with 2 cores: the real sample, within a budget of 30 minutes",
           "full": "a GPU and the real 45 GB dataset: the report's settings, in hours"}

# Why each profile trains what it trains, in words for the build page, filled in from the run's own settings.
WHY = {
    "smoke": ("every code path in seconds: {image_size} px images, epochs capped at {epochs}, a handful of images "
              "per class, run eagerly, since tracing a graph costs more than so few steps",),
    "cpu": ("{image_size} px for the from-scratch nets and {backbone_size} px for the backbones: every sample image "
            "is first brought down to the sample's smallest native size (64 px), so larger inputs add pixels but no "
            "information",
            "up to {epochs} epochs (patience {patience}), a Hyperband budget of {hyperband_max_epochs} epochs, fine "
            "tuning {fine_tune_epochs} epochs from each backbone's shallowest unfreeze point only: so that the whole "
            "book fits its budget of 30 minutes on 2 cores (this build's times are below)",
            "at most {max_per_patient} images of one patient, so that no patient supplies more than "
            "{max_patient_share:.0%} of a class's validation or test images",
            "class-weighted loss, since on a few hundred images unweighted nets name No Finding for nearly "
            "everything, then each classifier's biases shifted on validation until its mean probabilities are equal "
            "across classes, the balanced prior the weights trained for (shifted to validation's class shares "
            "instead, every cpu image model answered No Finding for every test image)"),
    "full": ("the report's sizes, epochs, split sizes, fine-tuning depths and plain argmax, on the real dataset",),
}


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
