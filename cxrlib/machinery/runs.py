"""The run folder: how chapters hand models, predictions, metrics and histories to each other.

Layout: runs/<profile>/<chapter>/{chapter.json, models/, predictions/, metrics/, histories/}, written
through a staging folder that replaces it only when the chapter finishes; runs/<profile>/.work/<chapter>/
keeps what must survive a failure (training backups); runs/<profile>/.kept/<chapter>/<identity>/ keeps
results (and page) others replaced, so that asking for them again is a reuse (within kept_budget()). Every file
is written atomically (temporary file, then rename), so a crash never leaves half a file, and each chapter writes
only below its own folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from cxrlib.core.config import CXR, kept_budget, runs_dir
from cxrlib.core.files import write_atomic, write_csv, write_json  # noqa: F401 (the run folder's writers)
from cxrlib.core.frames import logits, predictions_frame, probabilities  # noqa: F401 (the run folder's format)

# Set by the runner for the chapters it executes (to the identity it computed for them): it promotes their staged
# results with their pages.
RUNNER_ENV = "CXR_RUNNER"
KEPT = ".kept"


class ChapterRun:
    """One chapter's folder inside a profile's run folder.

    A run writes into a staging folder (runs/<profile>/.staging/<chapter>) and `promote()` moves it
    into place only once the chapter has finished, so a failed or interrupted run never touches the
    last good results. Training state that must outlive a failure (backups to resume from, Hyperband
    trials) lives in runs/<profile>/.work/<chapter>, outside both.
    """

    def __init__(self, profile: str, chapter: str, root=None, staged: bool = False):
        self.profile, self.chapter = profile, chapter
        self.profile_dir = Path(root or runs_dir()) / profile
        self.live = self.profile_dir / chapter
        self.staging = self.profile_dir / ".staging" / chapter
        self.path = self.staging if staged else self.live
        if staged:
            shutil.rmtree(self.staging, ignore_errors=True)  # what a crashed run left is never promoted
            self.staging.mkdir(parents=True)

    def file(self, kind: str, name: str) -> Path:
        """Where an artifact of this run goes (models, predictions, metrics, histories; work outlives it)."""
        if kind == "work":
            return self.profile_dir / ".work" / self.chapter / name
        return self.path / kind / name

    def live_file(self, kind: str, name: str) -> Path:
        """The same artifact in the last good (promoted) results."""
        return self.live / kind / name

    def keep(self, kind: str, name: str, folder=None) -> Path:
        """Carry a file of the last good results (or of kept ones in folder) into this run unchanged (a hard link
        where possible)."""
        source, target = Path(folder or self.live) / kind / name, self.file(kind, name)
        if source != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        return target

    def save_model(self, model, name: str) -> Path:
        """The trained model for inference (Grad-CAM, activations, ensembles): without the optimizer's state,
        a third of the size; training state lives in the work folder's backup."""
        return write_atomic(self.file("models", f"{name}.keras"), lambda tmp: save_without_optimizer(model, tmp))

    def save_predictions(self, name: str, split: str, frame: pd.DataFrame) -> Path:
        """Predictions of one model on one split."""
        return write_csv(self.file("predictions", f"{name}__{split}.csv"), frame)

    def save_metrics(self, name: str, row: pd.DataFrame) -> Path:
        """One metrics row (test split)."""
        return write_csv(self.file("metrics", f"{name}.csv"), row, index=True)

    def save_history(self, name: str, history: pd.DataFrame) -> Path:
        """Per-epoch training history."""
        return write_csv(self.file("histories", f"{name}.csv"), history)

    def save_temperatures(self, fits: dict) -> Path:
        """Each model's temperature fitted on validation ('chapter/model' -> T), for `cxr predict`, with the
        identity of the model it was fitted on: a retrained model must not inherit it."""
        return write_json(self.path / "temperatures.json",
                          {key: {"temperature": fit.temperature, "at_bound": fit.at_bound,
                                 "model_identity": model_identity(self.profile_dir, key)} for key, fit in fits.items()})

    def write_info(self, info: dict) -> Path:
        """What produced this folder: parameters, data identity, versions."""
        return write_json(self.path / "chapter.json", info)

    def read_info(self) -> dict:
        """This run's chapter.json so far."""
        return read_json(self.path / "chapter.json")

    def holding(self, name: str, made: str) -> Path | None:
        """The results folder, in place or kept (newest first), that holds model `name` of identity `made`."""
        for folder in [self.live, *kept_results(self.profile_dir, self.chapter)]:
            if (read_json(folder / "models" / f"{name}.json").get("identity") == made
                    and (folder / "models" / f"{name}.keras").is_file()):
                return folder
        return None

    def kept(self, made: str) -> Path:
        """Where results of identity `made` are kept once others replace them (results/, page.ipynb, page.log)."""
        return self.profile_dir / KEPT / self.chapter / made

    def keep_aside(self) -> None:
        """Move the results in place, if any, into the kept store under their identity (without one: deleted)."""
        made = read_json(self.live / "chapter.json").get("identity")
        if made and self.live.is_dir():
            target = self.kept(made) / "results"
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.live, target)
            os.utime(target.parent)

    def promote(self, source: Path | None = None) -> Path:
        """Move the finished staging folder (or kept results) into place, keeping the last good results aside; then
        drop the training state of the models it holds (kept until now, so a failure later loses none)."""
        source = Path(source or self.staging)
        trained = [path.stem for path in (source / "models").glob("*.keras")]
        self.keep_aside()
        promote(source, self.live)
        for name in trained:
            shutil.rmtree(self.file("work", name), ignore_errors=True)
        trim_kept(self.profile_dir)
        return self.live


def read_json(path) -> dict:
    """A JSON file's content, {} where it is absent."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def model_identity(profile_dir, key: str):
    """The identity of the trained model 'chapter/model' in place under a profile's folder (its models/<model>.json),
    None where it has no record."""
    chapter, _, name = key.partition("/")
    return read_json(Path(profile_dir) / chapter / "models" / f"{name}.json").get("identity")


def save_without_optimizer(model, path) -> None:
    """model.save, leaving out the optimizer's variables (Adam keeps two copies of every weight)."""
    optimizer = getattr(model, "optimizer", None)
    model.optimizer = None
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def promote(staging: Path, live: Path) -> Path:
    """Replace live by staging: rename the old aside, rename the new in, then delete the old."""
    staging, live = Path(staging), Path(live)
    if not staging.is_dir():
        raise FileNotFoundError(f"nothing staged at {staging}")
    old = live.with_name(f".{live.name}.old.{os.getpid()}")
    if live.exists():
        os.replace(live, old)
    os.replace(staging, live)
    shutil.rmtree(old, ignore_errors=True)
    return live


def kept_results(profile_dir: Path, chapter: str) -> list:
    """The kept results folders of a chapter, newest first."""
    return sorted(Path(profile_dir).glob(f"{KEPT}/{chapter}/*/results"), key=lambda p: p.parent.stat().st_mtime,
                  reverse=True)


def trim_kept(profile_dir: Path, budget: float | None = None) -> list:
    """Delete the oldest kept results until the rest fit the budget in bytes (default kept_budget(); -1 deletes them
    all: `cxr clean`); a file shared (hard-linked) with newer results counts once. Returns what went."""
    budget = kept_budget() if budget is None else budget
    seen = {(p.stat().st_dev, p.stat().st_ino) for p in Path(profile_dir).glob("[!.]*/**/*") if p.is_file()}
    used, dropped = 0, []
    for results in kept_results(profile_dir, "*"):
        for path in (p for p in results.parent.rglob("*") if p.is_file()):
            key = (path.stat().st_dev, path.stat().st_ino)
            used += 0 if key in seen else path.stat().st_size
            seen.add(key)
        if used > budget:
            shutil.rmtree(results.parent, ignore_errors=True)
            dropped.append(results.parent)
    return dropped


def chapter_infos(profile: str, root=None) -> dict:
    """chapter name -> its chapter.json, for every chapter whose results are in place under this profile."""
    base = Path(root or runs_dir()) / profile
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(base.glob("*/chapter.json"))}


class JoinError(RuntimeError):
    """Another chapter's results were made on other images, labels or settings than this chapter's."""


def check_same_data(profile: str, reader: str, chapter: str, data_id: str, infos: dict) -> None:
    """Refuse another chapter's results when they were made on other data than ours."""
    made_on = infos.get(chapter, {}).get("data_identity")
    if made_on != data_id:
        raise JoinError(f"chapter '{reader}' cannot use chapter '{chapter}': it ran on other data or data "
                        f"settings ({made_on} here, {data_id} now); re-run it: {CXR} run {chapter} --profile {profile}")


def check_rows(frame: pd.DataFrame, rows: pd.DataFrame, reader: str, key: str, profile: str) -> pd.DataFrame:
    """Image ids and labels must agree row for row with the reader's own split, never by position alone."""
    ids, labels = frame["Image Index"].astype(str).tolist(), frame["label"].astype(int).tolist()
    if ids != rows["Image Index"].astype(str).tolist() or labels != rows["label"].astype(int).tolist():
        chapter = key.split("/")[0]
        raise JoinError(f"chapter '{reader}' cannot use {key}: its image ids or labels differ from "
                        f"'{reader}'s split row for row; re-run it: {CXR} run {chapter} --profile {profile}")
    return frame


def prediction_files(profile: str, split: str = "test", root=None) -> dict:
    """'chapter/model' -> path of its predictions on this split, without reading them."""
    base = Path(root or runs_dir()) / profile
    return {f"{p.parent.parent.name}/{p.name.rsplit('__', 1)[0]}": p
            for p in sorted(base.glob(f"*/predictions/*__{split}.csv"))}


def load_predictions(profile: str, split: str = "test", root=None, data_id=None, keys=None,
                     rows: pd.DataFrame | None = None, reader: str = "this chapter") -> dict:
    """'chapter/model' -> predictions frame, for the given keys (default: every model saved for this split).

    With a data identity, predictions made on other data are refused; with rows (the reader's own
    split), image ids and labels must match row for row.
    """
    files = prediction_files(profile, split, root)
    infos = chapter_infos(profile, root) if data_id else {}
    found = {}
    for key in keys if keys is not None else files:
        if key not in files:
            raise FileNotFoundError(f"no {split} predictions for {key}; run: {CXR} run {key.split('/')[0]} "
                                    f"--profile {profile}")
        if data_id:
            check_same_data(profile, reader, key.split("/")[0], data_id, infos)
        found[key] = pd.read_csv(files[key])
        if rows is not None:
            check_rows(found[key], rows, reader, key, profile)
    return found


def metric_files(folder) -> dict:
    """(chapter, model) -> its metrics CSV, below a profile folder (runs/smoke) or a folder of profiles (runs,
    where chapter reads 'smoke/fused'); staging and work folders left out."""
    folder = Path(folder)
    paths = sorted(folder.glob("*/metrics/*.csv")) or sorted(folder.glob("*/*/metrics/*.csv"))
    return {(path.parent.parent.relative_to(folder).as_posix(), path.stem): path for path in paths
            if not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def read_metrics(path) -> pd.DataFrame:
    """One metrics file: a row per model, indexed by the name its table shows."""
    return pd.read_csv(path, index_col=0)


def load_metrics(profile: str, root=None, data_id=None, reader: str = "this chapter") -> pd.DataFrame:
    """Every metrics row saved under this profile, indexed by 'chapter/model' (checked like predictions)."""
    infos = chapter_infos(profile, root) if data_id else {}
    rows = []
    for (chapter, model), path in metric_files(Path(root or runs_dir()) / profile).items():
        if data_id:
            check_same_data(profile, reader, chapter, data_id, infos)
        rows.append(read_metrics(path).set_axis([f"{chapter}/{model}"]))
    return pd.concat(rows) if rows else pd.DataFrame()
