"""Hyperband in keras-tuner's distributed mode: a chief oracle and two CPU workers on 127.0.0.1."""
from __future__ import annotations

import numpy as np

from cxrlib import parallel, tuning


def test_two_workers_run_every_trial_exactly_once(tmp_path, monkeypatch):
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

    chief = tuning.read_search(tmp_path / "tuner", **settings)  # the oracle the chief saved
    trials = chief.oracle.trials
    assert trials and all(str(t.status) == "COMPLETED" for t in trials.values())
    ran = tuning.trials_run(chief)
    assert sorted(ran["trial"]) == sorted(trials)  # every trial ran, and none twice
    assert set(ran["tuner"]) <= set(workers)
    best = tuning.best_hyperparameters(chief)
    assert set(best) == {"layers", "dropout", "units", "learning_rate"}
    assert best == {k: chief.oracle.get_best_trials(1)[0].hyperparameters.get(k) for k in best}
