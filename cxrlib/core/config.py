"""Project-wide constants and the three run profiles (smoke, cpu, full)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Class order used everywhere: index i of a probability vector is CLASSES[i].
CLASSES = ("No Finding", "Effusion", "Infiltration", "Atelectasis")
NO_FINDING = 0

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

# Every tunable default of every chapter lives here, per profile; a notebook parameter left
# at None takes the profile's value, so the provenance line can list what a user changed.
_COMMON = {
    "seed": 42,
    "fractions": (0.6, 0.2, 0.2),
    "caps": None,
    "training_set": "more",
    "learning_rate": 1e-4,
    "dense_units": 2048,
    "resizer": True,
    "augment": False,
    "mixed_precision": False,
    # None: plain loss, as the report (its sets were nearly balanced); "balanced": weight each class
    # by n / (4 n_class), so that small, imbalanced sets do not collapse to predicting No Finding
    "class_weight": "none",
    # after training, shift the classifier's biases so every class has the same mean probability on validation
    # (cxrlib.science.calibration.balancing_offsets): a net trained on a few hundred images leans to No Finding
    # even under class weights, and its argmax then names no rare class; False: the report's plain argmax
    "balance_predictions": False,
    # section 1.2: the data
    "harmonise_resolution": False,
    "on_bad_image": "fail",
    # every class must have at least this many images in every split, else the run stops before training
    "min_per_split": 1,
    # TensorFlow's deterministic ops: bit-identical reruns on a CPU; full may switch them off for speed
    "deterministic": True,
    # graph tracing pays off over many steps; the smoke profile's few steps run eagerly instead, since tracing
    # a deep backbone (ResNet152, DenseNet121) takes longer there than training it
    "run_eagerly": False,
    # section 4: pretrained backbones
    "allow_random_weights": True,
    "chexnet_weights": None,
    "allow_partial_weights": False,
    "feature_learning_rate": 1e-3,
    "fine_tune_learning_rate": 1e-5,
    # "report": augment fine tuning where the report did (VGG16, section 4.1.3); "always" or "never"
    "fine_tune_augment": "report",
    # heads with augmentation (4.1.1.4, 4.2.1.3) train on the backbone's features of this many augmented copies of
    # the training images, copy e mod n in epoch e (cxrlib.machinery.transfer.augmented_features)
    "augmented_copies": 2,
    # section 3.3: Hyperband
    "hyperband_factor": 3,
    "hyperband_iterations": 1,
    "tuner_workers": 0,  # 0: search in the chapter's process; N: keras-tuner's chief + workers (cxrlib.machinery.parallel)
    # sections 5-7: analysis
    "ga_population": 40,
    "ga_generations": 60,
    "bootstrap": 1000,
}
PROFILES = {
    # seconds per chapter: tiny images, a few epochs, a handful of images per class
    "smoke": {**_COMMON, "balance_predictions": True, "run_eagerly": True, "class_weight": "balanced", "harmonise_resolution": True, "image_size": 64, "resize_to": 57, "batch_size": 16, "epochs": 2,
              "patience": 2, "max_per_class": {"train": 16, "val": 8, "test": 8},
              "backbone_size": 32, "fine_tune": "first", "fine_tune_epochs": 1, "hyperband_max_epochs": 2,
              "augmented_copies": 1,
              "ga_population": 12, "ga_generations": 8, "bootstrap": 100},
    # a 2-core laptop: the sample at reduced resolution, enough epochs to learn something. Every image is first
    # harmonised to the sample's smallest native size (64 px), so larger inputs add pixels but no information:
    # the from-scratch nets take 96 px (the fused net's last maps stay 4x4 for Grad-CAM), the backbones 64 px
    "cpu": {**_COMMON, "balance_predictions": True, "class_weight": "balanced", "harmonise_resolution": True, "min_per_split": 3, "image_size": 96, "resize_to": 87,
            "batch_size": 16, "epochs": 25, "patience": 8, "max_per_class": None,
            "backbone_size": 64, "fine_tune": "first", "fine_tune_epochs": 5, "hyperband_max_epochs": 6},
    # the report's settings, meant for a GPU and the real dataset
    "full": {**_COMMON, "image_size": 250, "resize_to": 227, "batch_size": 16, "epochs": 30,
             "patience": 5, "fractions": (0.8, 0.1, 0.1), "caps": REPORT_COUNTS,
             "max_per_class": None, "backbone_size": 224, "fine_tune": "all", "fine_tune_epochs": 50,
             "augmented_copies": 10,
             "hyperband_max_epochs": 70, "allow_random_weights": False, "min_per_split": 10},
}

# Why each profile trains what it trains, in words for the build page, filled in from the run's own settings.
WHY = {
    "smoke": ("every code path in seconds: {epochs} epochs at {image_size} px on a handful of images per class, "
              "run eagerly, since tracing a graph costs more than so few steps",),
    "cpu": ("{image_size} px for the from-scratch nets and {backbone_size} px for the backbones: every sample image "
            "is first brought down to the sample's smallest native size (64 px), so larger inputs add pixels but no "
            "information, and at 96 px the fused net's last maps are still 4x4 cells for Grad-CAM",
            "up to {epochs} epochs (patience {patience}), a Hyperband budget of {hyperband_max_epochs} epochs, fine "
            "tuning {fine_tune_epochs} epochs from each backbone's shallowest unfreeze point only: so that the whole "
            "book takes about half an hour on 2 cores",
            "class-weighted loss and balanced predictions (each classifier's biases shifted on validation until "
            "every class has the same mean probability): on a few hundred images the nets otherwise name No Finding "
            "for nearly everything, and macro F1 cannot tell the families apart"),
    "full": ("the report's sizes, epochs, split sizes, fine-tuning depths and plain argmax, on the real dataset",),
}


def profile_settings(profile: str) -> dict:
    """Fail early on a typo in a profile name rather than deep inside a chapter."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return dict(PROFILES[profile])


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
