"""Hyperband in keras-tuner's distributed mode: a chief oracle and two CPU workers on 127.0.0.1."""
from __future__ import annotations

import numpy as np

from cxrlib.machinery import parallel
from cxrlib.science import tuning


def test_two_workers_share_every_trial_and_each_runs_some(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU workers, whatever the machine has
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (16, 32, 32), dtype=np.uint8), np.arange(16) % 4)
    val = (rng.integers(0, 256, (8, 32, 32), dtype=np.uint8), np.arange(8) % 4)
    settings = {"image_size": 32, "resize_to": 28, "max_epochs": 3, "factor": 3, "seed": 1, "patience": 2,
                "tag": "test"}
    spec = parallel.write_spec(tmp_path / "tuner", train, val, batch_size=8, seed=1,
                               class_weight={0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}, search=settings)
    workers = parallel.distributed_search(spec, workers=2, timeout=900)
    assert workers == ["worker0", "worker1"]

    chief = parallel.read_search(tmp_path / "tuner", **settings)  # the oracle the chief saved
    trials = chief.oracle.trials
    assert trials and all(str(t.status) == "COMPLETED" for t in trials.values())
    # Hyperband with at most 3 epochs and factor 3, as keras-tuner brackets it: bracket 1 starts
    # ceil(ceil(1 + log3 3) / 2 * 3) = 3 configurations for 1 epoch and continues the best one for 3 epochs, bracket 0
    # trains ceil(1 + log3 3) = 2 for 3 epochs: 3 + 1 + 2 = 6 trials
    assert len(trials) == 6
    assert sorted(t.hyperparameters.values["tuner/epochs"] for t in trials.values()) == [1, 1, 1, 3, 3, 3]
    ran = parallel.trials_run(chief)
    assert sorted(ran["trial"]) == sorted(trials)  # every trial ran, and none twice
    per_worker = ran.groupby("tuner").size().to_dict()
    assert set(per_worker) == set(workers), f"a worker ran no trial: {per_worker}"  # both did work, none idle
    assert sum(per_worker.values()) == 6
    # the best configuration is the trial with the lowest validation loss, read from the trials themselves
    lowest = min(trials.values(), key=lambda t: t.score)
    assert tuning.best_hyperparameters(chief) == {k: lowest.hyperparameters.values[k]
                                                   for k in ("layers", "dropout", "units", "learning_rate")}
