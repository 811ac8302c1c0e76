"""The run folder: how chapters hand models, predictions, metrics and histories to each other.

Layout: runs/<profile>/<chapter>/{chapter.json, models/, predictions/, metrics/, histories/, work/}.
Every file is written atomically (temporary file, then rename), so a crash never leaves half a file,
and each chapter writes only below its own folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.config import CLASSES, runs_dir


def write_atomic(path: Path, write) -> Path:
    """Call write(tmp_path), then move the result into place in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> Path:
    """Atomic CSV."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=index))


def write_json(path: Path, data) -> Path:
    """Atomic JSON."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str)))


def predictions_frame(ids, y_true, probs) -> pd.DataFrame:
    """Per-image predictions keyed by NIH image id: true label, probabilities, predicted label."""
    probs = np.asarray(probs, float)
    frame = pd.DataFrame({"Image Index": list(ids), "label": np.asarray(y_true, int)})
    for k, name in enumerate(CLASSES):
        frame[f"p_{name}"] = probs[:, k]
    frame["pred"] = probs.argmax(axis=1)
    return frame


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The probability columns of a predictions frame, in CLASSES order."""
    return frame[[f"p_{c}" for c in CLASSES]].to_numpy()


class ChapterRun:
    """One chapter's folder inside a profile's run folder."""

    def __init__(self, profile: str, chapter: str, root=None):
        self.profile, self.chapter = profile, chapter
        self.profile_dir = Path(root or runs_dir()) / profile
        self.path = self.profile_dir / chapter

    def file(self, kind: str, name: str) -> Path:
        """Where an artifact of this chapter lives (models, predictions, metrics, histories, work)."""
        return self.path / kind / name

    def save_model(self, model, name: str) -> Path:
        """The trained model, for the analysis chapters (Grad-CAM, activations)."""
        return write_atomic(self.file("models", f"{name}.keras"), lambda tmp: model.save(tmp))

    def save_predictions(self, name: str, split: str, frame: pd.DataFrame) -> Path:
        """Predictions of one model on one split."""
        return write_csv(self.file("predictions", f"{name}__{split}.csv"), frame)

    def save_metrics(self, name: str, row: pd.DataFrame) -> Path:
        """One metrics row (test split)."""
        return write_csv(self.file("metrics", f"{name}.csv"), row, index=True)

    def save_history(self, name: str, history: pd.DataFrame) -> Path:
        """Per-epoch training history."""
        return write_csv(self.file("histories", f"{name}.csv"), history)

    def write_info(self, info: dict) -> Path:
        """What produced this folder: parameters, data fingerprint, versions."""
        return write_json(self.path / "chapter.json", info)


def chapter_infos(profile: str, root=None) -> dict:
    """chapter name -> its chapter.json, for every chapter that has run under this profile."""
    base = Path(root or runs_dir()) / profile
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(base.glob("*/chapter.json"))}


def check_same_data(profile: str, chapter: str, fingerprint: str, infos: dict) -> None:
    """Refuse another chapter's results when they were made on other data than ours."""
    made_on = infos.get(chapter, {}).get("data_fingerprint")
    if made_on != fingerprint:
        raise RuntimeError(f"chapter '{chapter}' ran on other data ({made_on}); "
                           f"re-run it: cxr run {chapter} --profile {profile} --force")


def prediction_files(profile: str, split: str = "test", root=None) -> dict:
    """'chapter/model' -> path of its predictions on this split, without reading them."""
    base = Path(root or runs_dir()) / profile
    return {f"{p.parent.parent.name}/{p.name.rsplit('__', 1)[0]}": p
            for p in sorted(base.glob(f"*/predictions/*__{split}.csv"))}


def load_predictions(profile: str, split: str = "test", root=None, fingerprint=None, keys=None) -> dict:
    """'chapter/model' -> predictions frame, for the given keys (default: every model saved for this split).

    With a fingerprint, predictions made on other data are refused rather than mixed in.
    """
    files = prediction_files(profile, split, root)
    infos = chapter_infos(profile, root) if fingerprint else {}
    found = {}
    for key in keys if keys is not None else files:
        if key not in files:
            raise FileNotFoundError(f"no {split} predictions for {key}; run: cxr run {key.split('/')[0]} "
                                    f"--profile {profile}")
        if fingerprint:
            check_same_data(profile, key.split("/")[0], fingerprint, infos)
        found[key] = pd.read_csv(files[key])
    return found


def load_metrics(profile: str, root=None) -> pd.DataFrame:
    """Every metrics row saved under this profile, indexed by 'chapter/model'."""
    base = Path(root or runs_dir()) / profile
    rows = []
    for path in sorted(base.glob("*/metrics/*.csv")):
        row = pd.read_csv(path, index_col=0)
        row.index = [f"{path.parent.parent.name}/{path.stem}"]
        rows.append(row)
    return pd.concat(rows) if rows else pd.DataFrame()
