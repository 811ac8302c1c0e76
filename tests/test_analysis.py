"""Error analysis, ensembles (GA, differential evolution, bootstrap) and box scoring with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.machinery import analysis, runs
from cxrlib.science import boxes as box_scores, ensemble
from cxrlib.science.metrics import agreement


def one_hot(labels, confidence=0.9):
    probs = np.full((len(labels), 4), (1 - confidence) / 3)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def noisy(labels, seed):
    rng = np.random.default_rng(seed)
    return one_hot(rng.integers(0, 4, len(labels)), 0.6)


LABELS = np.tile(np.arange(4), 15)


def test_ga_gives_the_perfect_model_the_largest_weight():
    probs = [noisy(LABELS, 1), one_hot(LABELS), noisy(LABELS, 2), noisy(LABELS, 3)]
    result = ensemble.genetic_weights(probs, LABELS, population=20, generations=15, seed=0)
    assert np.isclose(result.weights.sum(), 1.0) and (result.weights >= 0).all()
    assert np.argmax(result.weights) == 1
    assert result.fitness == pytest.approx(1.0)
    assert result.history == sorted(result.history)  # elitism never loses the best


def test_ga_restarts_keep_the_best_and_de_agrees():
    probs = [noisy(LABELS, 4), noisy(LABELS, 5), one_hot(LABELS)]
    best, all_runs = ensemble.genetic_restarts(probs, LABELS, seeds=(0, 1), population=10, generations=5)
    assert best.fitness == max(r.fitness for r in all_runs)
    assert np.argmax(ensemble.evolution_weights(probs, LABELS, maxiter=10)) == 2


def test_weighted_average_and_normalisation():
    a, b = one_hot([0, 1]), one_hot([1, 1])
    np.testing.assert_allclose(ensemble.weighted([a, b]), (a + b) / 2)
    np.testing.assert_allclose(ensemble.weighted([a, b], [3, 1]), 0.75 * a + 0.25 * b)
    np.testing.assert_allclose(ensemble.normalise(np.zeros(4)), np.full(4, 0.25))


def test_error_analysis_counts():
    ids = [f"{i}.png" for i in range(4)]
    labels = [0, 1, 2, 3]

    def frame(preds):
        return runs.predictions_frame(ids, labels, one_hot(preds))

    correct = analysis.correctness({"a": frame([0, 1, 0, 0]), "b": frame([0, 0, 2, 0]), "c": frame([0, 1, 2, 0])})
    totals, only = analysis.summary(correct)
    assert totals.loc["misclassified by all the models", "images"] == 1  # image 3
    assert totals.loc["correctly classified by all the models", "images"] == 1  # image 0
    assert only.loc["b", "misclassified only by this model"] == 1  # image 1
    assert only.loc["a", "misclassified only by this model"] == 1  # image 2
    assert only.loc["c", "correctly classified only by this model"] == 0
    assert list(analysis.pick(correct, all_wrong=True).index) == ["3.png"]


def save_val(tmp_path, chapter, model, correct: int, total: int = 8):
    """Validation predictions right on the first `correct` of `total` images (test predictions all wrong)."""
    labels = np.arange(total) % 4
    preds = np.where(np.arange(total) < correct, labels, (labels + 1) % 4)
    run = runs.ChapterRun("smoke", chapter, tmp_path)
    run.save_predictions(model, "val", runs.predictions_frame([f"{i}.png" for i in range(total)], labels, one_hot(preds)))
    run.save_predictions(model, "test", runs.predictions_frame(["t.png"], [0], one_hot([1])))


def test_model_choice_follows_validation_scores(tmp_path):
    # the alphabetically last fine tuning is the worse one on validation; the features head is better still
    save_val(tmp_path, "pretrained", "vgg16_finetune_block5_conv1", correct=4)
    save_val(tmp_path, "pretrained", "vgg16_finetune_block3_conv1", correct=6)
    save_val(tmp_path, "pretrained", "chexnet_finetune_conv5_block15_0_bn", correct=5)
    save_val(tmp_path, "pretrained", "chexnet_finetune_conv4_block1_0_bn", correct=3)
    save_val(tmp_path, "pretrained", "chexnet_features", correct=7)
    save_val(tmp_path, "fused", "fused", correct=2)
    table = analysis.model_choice("smoke", tmp_path)
    assert table.loc["VGG16", "chosen"] == "pretrained/vgg16_finetune_block3_conv1"
    assert table.loc["CheXNet", "chosen"] == "pretrained/chexnet_features"
    assert table.loc["Fused", "chosen"] == "fused/fused"
    # labels 0 1 2 3 0 1 2 3, the last two called 3 and 0: F1 4/5, 1, 2/3, 1/2 -> macro 89/120
    assert table.loc["VGG16", "validation macro F1"] == pytest.approx(89 / 120)
    assert "block5_conv1" in table.loc["VGG16", "candidates (validation macro F1)"]
    assert "ResNet152 (run: cxr run pretrained)" in analysis.missing_models_message(analysis.best_models("smoke", tmp_path))


def test_model_choice_ties_go_to_the_reports_preference(tmp_path):
    save_val(tmp_path, "pretrained", "vgg16_features", correct=5)
    save_val(tmp_path, "pretrained", "vgg16_finetune_block5_conv1", correct=5)
    save_val(tmp_path, "pretrained", "vgg16_finetune_block3_conv1", correct=5)
    assert analysis.best_models("smoke", tmp_path) == {"VGG16": "pretrained/vgg16_finetune_block3_conv1"}


def test_agreement_counts_what_all_or_only_one_model_gets():
    hits = pd.DataFrame({"a": [True, True, False, False], "b": [True, False, True, False]})
    assert agreement(hits) == (1, 1, {"a": (1, 1, 0.5), "b": (1, 1, 0.5)})


def test_report_candidates_are_listed_in_the_reports_preference():
    from cxrlib.science.choice import report_candidates

    saved = ["pretrained/vgg16_features", "pretrained/vgg16_finetune_block5_conv1", "fused/fused", "other/x",
             "pretrained/vgg16_finetune_block3_conv1"]
    assert report_candidates(saved) == {"VGG16": ["pretrained/vgg16_finetune_block3_conv1",
                                                  "pretrained/vgg16_finetune_block5_conv1", "pretrained/vgg16_features"],
                                        "Fused": ["fused/fused"]}


def test_labels_say_no_pretrained_weights():
    recorded = {"vgg16": {"pretrained": False}, "chexnet": {"pretrained": True}}  # chapter.json's fields
    assert analysis.display_label("VGG16", "pretrained/vgg16_features", recorded) == "VGG16 (no pretrained weights)"
    assert analysis.display_label("CheXNet", "pretrained/chexnet_features", recorded) == "CheXNet"
    assert analysis.display_label("Fused", "fused/fused", recorded) == "Fused"
    assert analysis.display_label("ensemble/ga", "ensemble/ga", recorded) == "ensemble/ga (no pretrained weights)"
    assert analysis.display_label("ensemble/ga", "ensemble/ga", {"vgg16": {"pretrained": True}}) == "ensemble/ga"


def peaked(size, x, y, width=3.0):
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width ** 2))


def test_heatmap_peaked_inside_a_box_scores_a_hit():
    box = (20, 20, 12, 12)
    row = box_scores.score_heatmap(peaked(64, 26, 26), box)
    assert row["pointing"] and row["IoBB>=0.9"] and row["IoU>=0.25"]
    miss = box_scores.score_heatmap(peaked(64, 55, 5), box)
    assert not miss["pointing"] and not miss["IoBB>=0.1"] and not miss["IoU>=0.1"]


def test_box_overlap_by_hand():
    iou, iobb = box_scores.box_overlap((0, 0, 10, 10), (5, 0, 10, 10))
    assert iou == pytest.approx(50 / 150) and iobb == pytest.approx(0.5)


def test_score_boxes_scales_from_1024_and_beats_random():
    boxes = pd.DataFrame({"Image Index": ["a.png", "b.png"], "Finding Label": ["Effusion"] * 2,
                          "x": [512.0] * 2, "y": [512.0] * 2, "w": [256.0] * 2, "h": [256.0] * 2})
    heatmaps = {(name, "Effusion"): peaked(64, 40, 40) for name in ("a.png", "b.png")}
    table = box_scores.score_boxes(heatmaps, boxes, size=64, repeats=50)
    assert table.loc["pointing", "Grad-CAM"] == 1.0
    assert table.loc["pointing", "random point"] < 0.5
    lone = box_scores.score_boxes({("a.png", "Effusion"): peaked(64, 40, 40)}, boxes.head(1), size=64)
    assert lone.empty  # one image: no other image to shuffle onto, so no column scores it


def test_nih_box_file_labels(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Infiltrate,1,2,3,4\n")
    boxes = analysis.read_boxes(path)
    assert boxes.loc[0, "Finding Label"] == "Infiltration" and boxes.loc[0, "h"] == 4
