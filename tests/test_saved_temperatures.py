"""Temperatures fitted on validation are saved where `cxr predict` finds them, with the identity of the model they
were fitted on: a retrained model never gets a stale one, and a fit at a search bound is never applied."""
from __future__ import annotations

import json

import numpy as np

from cxrlib.machinery import predict
from cxrlib.machinery.runs import ChapterRun, write_json
from cxrlib.science import calibration


def trained(profile_dir, key: str, made: str) -> None:
    """A model record, as Chapter.fit writes it, for 'chapter/model' with this identity."""
    chapter, name = key.split("/")
    write_json(profile_dir / chapter / "models" / f"{name}.json", {"identity": made, "spec": {}})


def saved(profile_dir, fits: dict) -> None:
    """The ensemble chapter's temperatures, saved in place."""
    run = ChapterRun(profile_dir.name, "ensemble", root=profile_dir.parent)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_temperatures(fits)


def test_ensemble_temperatures_reach_predict(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 4)) * 3
    y = np.array([rng.choice(4, p=p) for p in calibration.softmax(z)])
    fits = calibration.fit_temperatures({"fused/fused": 4 * z}, y)  # a model four times too sharp
    profile_dir = tmp_path / "smoke"
    trained(profile_dir, "fused/fused", "first")
    saved(profile_dir, fits)
    found, status = predict.saved_temperature(profile_dir, "fused/fused")
    assert abs(found - 4) < 0.4 and found == fits["fused/fused"].temperature and status == predict.APPLIED
    assert predict.saved_temperature(profile_dir, "scratch/cnn") == (None, "none (not fitted)")


def test_a_retrained_model_never_gets_a_stale_temperature(tmp_path):
    profile_dir = tmp_path / "smoke"
    trained(profile_dir, "fused/fused", "first")
    saved(profile_dir, {"fused/fused": calibration.TemperatureFit(2.0, False)})
    entry = json.loads((profile_dir / "ensemble" / "temperatures.json").read_text())["fused/fused"]
    assert entry["model_identity"] == "first"
    trained(profile_dir, "fused/fused", "second")  # retrained: a new identity, the old temperature left behind
    assert predict.saved_temperature(profile_dir, "fused/fused") == (None, "none (fitted on another training)")


def test_a_temperature_at_a_search_bound_is_not_applied(tmp_path):
    profile_dir = tmp_path / "smoke"
    trained(profile_dir, "fused/fused", "first")
    never_right = calibration.fit_temperature([1, 2, 3], [[4.0, 0, 0, 0]] * 3)  # softest is best: T = 100, a bound
    assert never_right.at_bound
    saved(profile_dir, {"fused/fused": never_right})
    assert predict.saved_temperature(profile_dir, "fused/fused") == (None, "none (search bound)")
