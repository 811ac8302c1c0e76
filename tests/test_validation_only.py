"""Everything the ensemble chapter fits is fitted on validation alone, and the fitted ensembles carry
validation predictions of their own (out-of-fold), so they compete in the validation choice."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.machinery import analysis, runs
from cxrlib.science import calibration, choice, ensemble
from cxrlib.science.metrics import macro_f1

GA = dict(population=20, generations=15, crossover=0.9, mutation=0.2, crossover_genes=0.5, tournament=3, elitism=0.1)


def rows(split: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"Image Index": [f"{split}{i}.png" for i in range(n)], "label": np.arange(n) % 4})


def members(labels, seed: int) -> dict:
    """A quiet but always right model and two loud models that agree on the wrong class."""
    rng = np.random.default_rng(seed)
    right = 2.0 * np.eye(4)[labels] + rng.normal(0, 0.01, (len(labels), 4))
    wrong = 3.0 * np.eye(4)[(labels + 1) % 4] + rng.normal(0, 0.01, (len(labels), 4))
    return {"quiet": right, "loud": wrong, "loud too": wrong + rng.normal(0, 0.01, wrong.shape)}


def fit(val: dict, y_val):
    return ensemble.fit_on_validation(val, y_val, patients=np.arange(len(y_val)) // 2, seed=0, restarts=2,
                                      de_maxiter=30, **GA)


def test_fitted_ensembles_carry_out_of_fold_validation_predictions_and_can_be_chosen(tmp_path):
    val_rows, test_rows = rows("v", 40), rows("t", 20)
    val, test = members(val_rows["label"].to_numpy(), 0), members(test_rows["label"].to_numpy(), 1)
    fitted = fit(val, val_rows["label"])
    frames = ensemble.prediction_frames(fitted, test, val_rows, test_rows)
    for key in ensemble.METHODS:
        ensemble_run = runs.ChapterRun("smoke", "ensemble", tmp_path)
        for split in ("val", "test"):
            ensemble_run.save_predictions(key, split, frames[key][split])
        ensemble_run.save_metrics(key, pd.DataFrame({"F1-macro": [0.0]}, index=[key]))
    loud = runs.ChapterRun("smoke", "scratch", tmp_path)
    loud.save_predictions("second_cnn", "val", runs.predictions_frame(val_rows["Image Index"], val_rows["label"],
                                                                      calibration.softmax(val["loud"]), val["loud"]))
    loud.save_metrics("second_cnn", pd.DataFrame({"F1-macro": [0.0]}, index=["second_cnn"]))
    scores = choice.validation_scores(runs.load_predictions("smoke", "val", tmp_path))
    # average voting follows the loud pair (wrong everywhere); the GA and DE weights find the quiet model
    assert scores["ensemble/average"] == 0 and scores["scratch/second_cnn"] == 0
    assert scores["ensemble/ga"] == 1 and scores["ensemble/differential_evolution"] == 1
    assert choice.choose(scores) in ("ensemble/ga", "ensemble/differential_evolution")
    # the saved validation predictions are the out-of-fold ones, with their logits for calibration
    np.testing.assert_allclose(runs.logits(frames["ga"]["val"]), fitted.val_log_probs["ga"])


def test_out_of_fold_predictions_come_from_weights_fitted_without_their_rows():
    labels = np.arange(8) % 4
    seen = []

    def fit_weights(probs, y):
        seen.append(len(y))
        return np.array([1.0, 0.0])

    fold = ensemble.patient_folds(np.repeat([1, 2, 3, 4], 2), folds=2, seed=0)
    assert [len(set(fold[2 * i:2 * i + 2])) for i in range(4)] == [1] * 4  # a patient's rows share a fold
    out = ensemble.out_of_fold(fit_weights, [{"right": np.eye(4)[labels]}, {"blank": np.zeros((8, 4))}], labels, fold)
    assert seen == [4, 4]  # each fold fitted on the other half only
    assert (out.argmax(axis=1) == labels).all()


def test_out_of_fold_predictions_choose_each_member_again_without_their_rows():
    """Two candidates for one member, each right on one fold and wrong on the other: either scores 0.5 on the
    whole validation set, but a choice made on the other fold always picks the one wrong on the held fold."""
    labels = np.arange(8) % 4
    fold = ensemble.patient_folds(np.arange(8), folds=2, seed=0)
    right, wrong = np.eye(4)[labels], np.eye(4)[(labels + 1) % 4]
    first = {"right on fold 0": np.where((fold == 0)[:, None], right, wrong),
             "right on fold 1": np.where((fold == 1)[:, None], right, wrong)}
    out = ensemble.out_of_fold(lambda probs, y: np.ones(len(probs)), [first], labels, fold)
    assert ensemble.fast_macro_f1(labels, out.argmax(axis=1)) == 0
    fitted = ensemble.fit_on_validation({"member": first["right on fold 0"]}, labels, np.arange(8), folds=2,
                                        candidates={"member": first}, restarts=1, de_maxiter=5, population=4,
                                        generations=2)
    assert all(ensemble.fast_macro_f1(labels, z.argmax(axis=1)) == 0 for z in fitted.val_log_probs.values())


def test_nothing_fitted_moves_when_the_test_split_changes(tmp_path):
    """Weights, out-of-fold predictions, temperatures and the model choice from validation only: replacing
    the test split's labels and probabilities changes none of them."""
    val_rows, test_rows = rows("v", 40), rows("t", 20)
    y_val = val_rows["label"].to_numpy()
    val = members(y_val, 0)
    rng = np.random.default_rng(5)

    def everything(y_test, test: dict):
        for name, logits in {**val, **{f"{n} (test)": z for n, z in test.items()}}.items():
            split = "test" if name.endswith("(test)") else "val"
            run = runs.ChapterRun("smoke", "pretrained", tmp_path)
            ids, labels = (test_rows["Image Index"], y_test) if split == "test" else (val_rows["Image Index"], y_val)
            key = f"vgg16_finetune_{name.split(' (')[0].replace(' ', '_')}"
            run.save_predictions(key, split, runs.predictions_frame(ids, labels, calibration.softmax(logits), logits))
        fitted = fit(val, y_val)
        val_all = {**val, **fitted.val_log_probs}
        test_all = {**test, **ensemble.combine(fitted, test)}
        table = calibration.temperature_table(val_all, test_all, y_val, y_test)
        choice = analysis.model_choice("smoke", tmp_path)
        return fitted, table["temperature"], choice

    first = everything(test_rows["label"].to_numpy(), members(test_rows["label"].to_numpy(), 1))
    other_labels = rng.integers(0, 4, 20)
    second = everything(other_labels, {name: rng.normal(0, 5, (20, 4)) for name in val})
    pd.testing.assert_frame_equal(first[0].weights, second[0].weights)
    for key in ensemble.METHODS:
        np.testing.assert_array_equal(first[0].val_log_probs[key], second[0].val_log_probs[key])
    pd.testing.assert_series_equal(first[1], second[1])
    pd.testing.assert_frame_equal(first[2], second[2])
    assert first[2].loc["VGG16", "chosen"] == "pretrained/vgg16_finetune_quiet"


@pytest.mark.parametrize("seed", range(5))
def test_fast_macro_f1_is_the_metrics_macro_f1(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 4, 30), rng.integers(0, 3, 30)
    assert ensemble.fast_macro_f1(y, pred) == pytest.approx(macro_f1(y, pred), abs=1e-15)


def test_ensemble_log_probabilities_are_the_log_of_the_weighted_average():
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 3, (6, 4)) for _ in range(3)]
    weights = np.array([0.5, 0.0, 1.5])
    expected = np.log(ensemble.weighted([calibration.softmax(z) for z in logits], weights))
    np.testing.assert_allclose(ensemble.weighted_log_probs(logits, weights), expected, rtol=1e-12)
    far = ensemble.weighted_log_probs([np.array([[0.0, -900.0, 0.0, 0.0]])] * 2)
    assert np.isfinite(far).all() and far[0, 1] == pytest.approx(-900 - np.log(3), rel=1e-12)
