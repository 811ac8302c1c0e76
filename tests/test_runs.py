"""Run folder: atomic writes, predictions keyed by image id, refusing results made on other data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.machinery import runs


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.csv"

    def fail(tmp):
        tmp.write_text("partial")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        runs.write_atomic(target, fail)
    assert list(tmp_path.iterdir()) == []


def test_predictions_round_trip_across_chapters(tmp_path):
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    frame = runs.predictions_frame(["a.png", "b.png"], [0, 3], probs)
    for chapter in ("fused", "scratch"):
        run = runs.ChapterRun("smoke", chapter, tmp_path)
        run.write_info({"data_identity": "abc"})
        run.save_predictions("model", "test", frame)
    found = runs.load_predictions("smoke", "test", tmp_path, data_id="abc")
    assert set(found) == {"fused/model", "scratch/model"}
    assert list(found["fused/model"]["pred"]) == [0, 3]
    assert np.allclose(runs.probabilities(found["fused/model"]), probs)
    with pytest.raises(runs.JoinError, match="cannot use chapter '(fused|scratch)': it ran on other data"):
        runs.load_predictions("smoke", "test", tmp_path, data_id="different", reader="ensemble")


def test_predictions_are_joined_by_image_id_and_label_never_by_position(tmp_path):
    probs = np.eye(4)[[0, 3]]
    run = runs.ChapterRun("smoke", "fused", tmp_path)
    run.write_info({"data_identity": "abc"})
    run.save_predictions("fused", "test", runs.predictions_frame(["a.png", "b.png"], [0, 3], probs))
    ours = pd.DataFrame({"Image Index": ["a.png", "b.png"], "label": [0, 3]})
    assert len(runs.load_predictions("smoke", "test", tmp_path, "abc", rows=ours)["fused/fused"]) == 2
    for other in (ours.iloc[::-1], ours.assign(label=[0, 2]), ours.iloc[:1]):
        with pytest.raises(runs.JoinError, match="chapter 'ensemble' cannot use fused/fused.*cxr run fused"):
            runs.load_predictions("smoke", "test", tmp_path, "abc", rows=other.reset_index(drop=True),
                                  reader="ensemble")


def test_staged_results_replace_the_live_ones_only_when_promoted(tmp_path):
    live = runs.ChapterRun("smoke", "fused", tmp_path, staged=True)
    live.save_metrics("a", pd.DataFrame({"Accuracy": [1.0]}, index=["a"]))
    live.promote()
    staged = runs.ChapterRun("smoke", "fused", tmp_path, staged=True)
    staged.save_metrics("b", pd.DataFrame({"Accuracy": [0.5]}, index=["b"]))
    assert sorted(p.name for p in (tmp_path / "smoke" / "fused" / "metrics").iterdir()) == ["a.csv"]
    staged.keep("metrics", "a.csv")
    staged.promote()
    assert sorted(p.name for p in (tmp_path / "smoke" / "fused" / "metrics").iterdir()) == ["a.csv", "b.csv"]
    assert not (tmp_path / "smoke" / ".staging" / "fused").exists()


def test_metrics_rows_are_gathered(tmp_path):
    from cxrlib.science.metrics import metrics_row

    run = runs.ChapterRun("smoke", "fused", tmp_path)
    run.save_metrics("fused", metrics_row("fused", [0, 1], np.eye(4)[[0, 1]]))
    table = runs.load_metrics("smoke", tmp_path)
    assert list(table.index) == ["fused/fused"] and table.loc["fused/fused", "Accuracy"] == 1.0


def test_load_predictions_by_key_names_what_to_run(tmp_path):
    run = runs.ChapterRun("smoke", "fused", tmp_path)
    run.write_info({"data_identity": "abc"})
    run.save_predictions("fused", "test", runs.predictions_frame(["a.png"], [0], np.eye(4)[[0]]))
    assert set(runs.load_predictions("smoke", "test", tmp_path, "abc", keys=["fused/fused"])) == {"fused/fused"}
    with pytest.raises(FileNotFoundError, match="cxr run scratch"):
        runs.load_predictions("smoke", "test", tmp_path, "abc", keys=["scratch/second_cnn"])
