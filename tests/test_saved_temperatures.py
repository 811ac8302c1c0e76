"""Temperatures fitted on validation are saved where `cxr predict` finds them."""
from __future__ import annotations

import numpy as np

from cxrlib.machinery import predict
from cxrlib.machinery.runs import ChapterRun
from cxrlib.science import calibration


def test_ensemble_temperatures_reach_predict(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 4)) * 3
    y = np.array([rng.choice(4, p=p) for p in calibration.softmax(z)])
    fits = calibration.fit_temperatures({"fused/fused": 4 * z}, y)  # a model four times too sharp
    run = ChapterRun("smoke", "ensemble", root=tmp_path)
    run.path.mkdir(parents=True)
    run.save_temperatures(fits)
    found = predict.saved_temperature(tmp_path / "smoke", tmp_path / "smoke" / "fused", "fused/fused", "fused")
    assert abs(found - 4) < 0.4 and found == fits["fused/fused"].temperature
    assert predict.saved_temperature(tmp_path / "smoke", tmp_path / "smoke" / "scratch", "scratch/cnn", "cnn") is None
