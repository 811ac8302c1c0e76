"""The Hyperband search over cxrlib.science.tuning's space: in this process, or under keras-tuner's distributed mode
(one chief oracle, N workers, gRPC). Trials live in the run folder, so an interrupted search resumes.

The chief (KERASTUNER_TUNER_ID=chief) hands out trials and keeps their results; each worker
(KERASTUNER_TUNER_ID=worker<k>) asks it for a trial, trains it and reports back. Here one worker
runs per visible GPU (CUDA_VISIBLE_DEVICES set to that GPU alone), or N CPU workers where there is no GPU.
Workers on other machines join by running `python -m cxrlib.machinery.parallel worker SPEC` with the same three
environment variables pointing at the chief (see the README, "Hyperband on several machines").
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import REPO_ROOT


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, for the chief."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def visible_gpus() -> list:
    """GPU indices this machine shows (CUDA_VISIBLE_DEVICES if set, else nvidia-smi's list); [] without GPUs."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g for g in given.split(",") if g.strip() and g.strip() != "-1"]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def tuner_env(tuner_id: str, host: str, port: int, gpu=None) -> dict:
    """The environment keras-tuner reads to join a distributed search; gpu pins a worker to one GPU ('' for CPU)."""
    env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": host,
           "KERASTUNER_ORACLE_PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def array_file(array, folder: Path, name: str) -> str:
    """A file holding the array: the cache's own .npy when it is memory-mapped, else a copy in folder."""
    filename = getattr(array, "filename", None)
    if filename and Path(filename).is_file() and getattr(array, "offset", 0) >= 0:
        return str(filename)
    path = Path(folder) / f"{name}.npy"
    np.save(path, np.asarray(array))
    return str(path)


def write_spec(folder: Path, train, val, *, batch_size: int, seed: int, class_weight, search: dict,
               deterministic: bool = True) -> Path:
    """Everything a worker needs to rebuild the data and the search, as JSON in the search folder.

    train and val are (uint8 images, labels); search holds tuning.search's keyword arguments.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"folder": str(folder), "batch_size": batch_size, "seed": seed, "deterministic": deterministic,
            "class_weight": {str(k): v for k, v in (class_weight or {}).items()} or None, "search": search,
            "train": {"images": array_file(train[0], folder, "train_images"), "labels": np.asarray(train[1]).tolist()},
            "val": {"images": array_file(val[0], folder, "val_images"), "labels": np.asarray(val[1]).tolist()}}
    path = folder / "distributed_search.json"
    path.write_text(json.dumps(spec))
    return path


def distributed_search(spec_path: Path, workers: int, host=None, port=None, timeout=None) -> list:
    """Start the chief and the workers (one per visible GPU, else `workers` CPU workers); wait for all.

    The chief listens on host:port (default KERASTUNER_ORACLE_IP / _PORT when set, else 127.0.0.1 and a
    free port), where workers on other machines may join too. Returns the local workers' tuner ids; any
    process that fails stops the others and raises with the end of its log.
    """
    host = host or os.environ.get("KERASTUNER_ORACLE_IP", "127.0.0.1")
    port = port or int(os.environ.get("KERASTUNER_ORACLE_PORT", 0)) or free_port(host)
    gpus = visible_gpus()
    pins = gpus if gpus else [""] * workers
    if not pins:
        raise ValueError(f"tuner_workers must be >= 1 on a machine without GPUs, got {workers}")
    logs = Path(spec_path).parent
    command = [sys.executable, "-m", "cxrlib.machinery.parallel", "run", str(spec_path)]
    chief = _start(command, tuner_env("chief", host, port), logs / "chief.log")
    names = [f"worker{k}" for k in range(len(pins))]
    started = [_start(command, tuner_env(name, host, port, pin), logs / f"{name}.log") for name, pin in zip(names, pins)]
    try:
        for name, process in zip(["chief", *names], [chief, *started]):
            if process.wait(timeout=timeout):
                raise RuntimeError(f"Hyperband {name} exited with status {process.returncode}; "
                                   f"end of {logs / (name + '.log')}:\n{_tail(logs / (name + '.log'))}")
    finally:
        for process in [chief, *started]:
            if process.poll() is None:
                process.kill()
    return names


def _start(command, env, log: Path):
    """One background process writing its output to log."""
    with open(log, "w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def _tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file."""
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"


def chapter_search(ch):
    """The hyperband chapter's search, with the final training's class weights: in this process, or under
    keras-tuner's distributed mode with a chief and ch['tuner_workers'] workers (cxrlib.machinery.parallel)."""
    from cxrlib.science.data.pipeline import steps_per_epoch
    from cxrlib.science.training import class_weights

    size = ch["image_size"]
    settings = {"image_size": size, "resize_to": ch["resize_to"], "max_epochs": ch["hyperband_max_epochs"],
                "factor": ch["hyperband_factor"], "iterations": ch["hyperband_iterations"], "seed": ch["seed"],
                "patience": ch["patience"], "tag": f"{ch.data_id}|{ch['batch_size']}|{ch['class_weight']}"}
    weights = class_weights(ch.data.labels("train"), ch["class_weight"])
    ch.training()  # TensorFlow's deterministic ops, as for every training
    folder = Path(ch.run.file("work", "tuner"))
    if not ch["tuner_workers"]:
        steps = steps_per_epoch(len(ch.data.labels("train")), ch["batch_size"])  # the training pipeline is endless
        return search(ch.dataset("train", size), ch.dataset("val", size), folder, class_weight=weights,
                      steps_per_epoch=steps, **settings)
    spec = write_spec(folder, (ch.data.images("train", size), ch.data.labels("train")),
                               (ch.data.images("val", size), ch.data.labels("val")), batch_size=ch["batch_size"],
                               seed=ch["seed"], class_weight=weights, search=settings,
                               deterministic=ch["deterministic"])
    workers = distributed_search(spec, ch["tuner_workers"])
    print(f"Hyperband ran on {len(workers)} worker(s) under a chief oracle; logs in {folder}")
    tuner = read_search(folder, **settings)
    check_trials(tuner)
    return tuner


def _recorded_hyperband():
    """keras_tuner.Hyperband whose every finished trial is logged with the tuner (worker) that ran it."""
    import keras_tuner

    class Recorded(keras_tuner.Hyperband):
        def on_trial_end(self, trial):
            """Log who ran the trial, then let keras-tuner finish it."""
            with open(Path(self.project_dir) / "trials_run.txt", "a") as log:
                log.write(f"{self.tuner_id} {trial.trial_id}\n")
            super().on_trial_end(trial)

    return Recorded


def project_name(image_size: int, resize_to: int, max_epochs: int, factor: int, iterations: int, seed: int,
                 patience: int, tag: str) -> str:
    """The search's folder name: every setting in a hash, so a changed one starts a new search."""
    settings = f"{image_size}|{resize_to}|{max_epochs}|{factor}|{iterations}|{seed}|{patience}|{tag}"
    return "second_cnn_" + hashlib.sha256(settings.encode()).hexdigest()[:12]


def open_tuner(folder: Path, *, image_size: int, resize_to: int, max_epochs: int, factor: int = 3,
               iterations: int = 1, seed: int = 42, patience: int = 5, tag: str = ""):
    """The Hyperband tuner of these settings; it reloads whatever the folder already holds.

    Under keras-tuner's distributed mode (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and _PORT set) it is
    the chief's oracle or a worker that asks the chief for trials; otherwise a local search.
    """
    from cxrlib.science.tuning import hypermodel

    project = project_name(image_size, resize_to, max_epochs, factor, iterations, seed, patience, tag)
    return _recorded_hyperband()(hypermodel(image_size, resize_to, seed), objective="val_loss", max_epochs=max_epochs,
                                 factor=factor, hyperband_iterations=iterations, seed=seed,
                                 directory=str(folder), project_name=project, overwrite=False)


def read_search(folder: Path, **settings):
    """The tuner of a finished (e.g. distributed) search, with the trials its chief oracle saved."""
    roles = {k: os.environ.pop(k) for k in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
             if k in os.environ}
    try:
        tuner = open_tuner(folder, **settings)  # a local reader, never a worker of a running chief
    finally:
        os.environ.update(roles)
    if (Path(tuner.project_dir) / "oracle.json").is_file():
        tuner.oracle.reload()
    return tuner


def search(train_ds, val_ds, folder: Path, *, image_size: int, resize_to: int, max_epochs: int,
           factor: int = 3, iterations: int = 1, seed: int = 42, patience: int = 5, tag: str = "",
           class_weight=None, steps_per_epoch=None):
    """Run (or resume) the search; returns the tuner.

    tag (e.g. the data fingerprint and batch size) joins the settings in the project's name, so a
    changed setting starts a new search instead of resuming a stale one. class_weight is the final
    training's (science.training.class_weights), so trials are judged on the loss the model will train on.
    """
    import keras
    from keras_tuner.src.distribute import utils as distributed  # keras-tuner's only word on who is the chief

    from cxrlib.science.training import EpochLine

    tuner = open_tuner(folder, image_size=image_size, resize_to=resize_to, max_epochs=max_epochs, factor=factor,
                       iterations=iterations, seed=seed, patience=patience, tag=tag)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    tuner.search(train_ds, validation_data=val_ds, callbacks=[stop, EpochLine("trial", max_epochs)], verbose=0,
                 class_weight=class_weight, steps_per_epoch=steps_per_epoch)
    if distributed.has_chief_oracle() and not distributed.is_chief_oracle():
        return tuner  # a worker: the chief holds the trials
    check_trials(tuner)
    return tuner


def check_trials(tuner):
    """Every trial completed; otherwise one error naming how many failed and the first reason."""
    failed = [t for t in tuner.oracle.trials.values() if str(t.status) != "COMPLETED"]
    if failed or not tuner.oracle.trials:
        reason = failed[0].message if failed else "no trial ran"
        raise RuntimeError(f"{len(failed)} Hyperband trial(s) failed: {reason}")


def trials_run(tuner) -> pd.DataFrame:
    """Which tuner (worker) ran which trial, from the search folder's log; one row per trial run."""
    log = Path(tuner.project_dir) / "trials_run.txt"
    lines = log.read_text().split("\n") if log.is_file() else []
    return pd.DataFrame([line.split() for line in lines if line.strip()], columns=["tuner", "trial"])


def run_role(spec_path) -> None:
    """Run this process's part (chief or worker, from KERASTUNER_TUNER_ID) of the search in spec_path."""
    from cxrlib.science.data.pipeline import make_dataset, steps_per_epoch
    from cxrlib.science.training import set_determinism

    spec = json.loads(Path(spec_path).read_text())
    set_determinism(spec.get("deterministic", True))

    def data(split, shuffle=False):
        images = np.load(spec[split]["images"], mmap_mode="r")
        return make_dataset(images, np.asarray(spec[split]["labels"]), spec["batch_size"], shuffle, spec["seed"])

    weights = {int(k): v for k, v in spec["class_weight"].items()} if spec["class_weight"] else None
    steps = steps_per_epoch(len(spec["train"]["labels"]), spec["batch_size"])  # as the one-process search
    search(data("train", shuffle=True), data("val"), Path(spec["folder"]), class_weight=weights,
           steps_per_epoch=steps, **spec["search"])


def main(argv=None):
    """`python -m cxrlib.machinery.parallel run SPEC`: be the chief or a worker, as KERASTUNER_TUNER_ID says."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("run", "worker"):
        raise SystemExit("usage: python -m cxrlib.machinery.parallel run|worker SPEC.json "
                         "(with KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set)")
    run_role(args[1])


if __name__ == "__main__":
    main()
