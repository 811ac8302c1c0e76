"""Chapter's own numbers, outside any notebook: the metrics row evaluate() saves for a hand-made prediction table,
train_model's saved predictions and metrics against an independent computation, metrics() and earlier_metrics()
as a later chapter reads them, and the hyperband chapter's search (parallel.chapter_search) with its known trial count.
Tiny inputs (the 32 px NIH folder of conftest, one epoch): seconds each."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from cxrlib.core.config import CLASSES
from cxrlib.core.frames import probability_columns
from cxrlib.machinery.runs import JoinError
from tests.conftest import toy_world
from tests.test_known_answers import AUC, ACCURACY, F1, FNFR, LOSS, hand_row

PROBS = probability_columns()
DATA = {"fractions": (0.6, 0.2, 0.2), "seed": 42}  # per class: 8 train, 2 val, 2 test images


def independent_metrics(frame: pd.DataFrame) -> dict:
    """The report's metrics of a saved predictions file, computed with scikit-learn directly."""
    y, probs = frame["label"].to_numpy(), frame[PROBS].to_numpy()
    pred = probs.argmax(axis=1)
    diseased = y != 0
    return {"Accuracy": accuracy_score(y, pred),
            "F1-macro": f1_score(y, pred, labels=sorted(set(y)), average="macro", zero_division=0),
            "ROC AUC": roc_auc_score(y, probs, multi_class="ovr", labels=[0, 1, 2, 3]),
            "FNFR": float(np.mean(pred[diseased] == 0)),
            **{f"F1-{c}": f for c, f in zip(CLASSES, f1_score(y, pred, labels=[0, 1, 2, 3], average=None,
                                                              zero_division=0))}}


def tiny_net(image_size: int):
    """A seeded, fast classifier with the book's grey input and a softmax layer named 'classifier'."""
    import keras

    from cxrlib.science.models.inputs import grey_input

    inputs, x = grey_input(image_size)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax", name="classifier")(x))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run folder, cache and tiny NIH folder of this module's own; the scratch chapter trains 'tiny' there."""
    from cxrlib.machinery.chapter import Chapter

    with toy_world(tmp_path_factory, "chapter-units") as (base, folder):
        scratch = Chapter("scratch", "smoke", data_dir=str(folder), epochs=1, batch_size=8, **DATA)
        trained = scratch.train_model("tiny", tiny_net, image_size=32)
        scratch.finish()
        yield {"base": base, "folder": folder, "scratch": scratch, "tiny": trained}


def test_evaluate_saves_the_metrics_of_a_hand_made_prediction_table(world):
    """evaluate() on a 'model' whose probabilities are the hand-made table of test_known_answers, row for row."""
    import keras
    import tensorflow as tf

    from cxrlib.machinery.chapter import Chapter

    ch = Chapter("fused", "smoke", data_dir=str(world["folder"]), **DATA)
    tables = {}
    for split in ("val", "test"):
        labels = ch.data.labels(split)
        assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
        # the first image of each class as the table's first of that class, the second as its second
        occurrence = [list(labels[:i]).count(label) for i, label in enumerate(labels)]
        tables[split] = np.array([hand_row(label, k) for label, k in zip(labels, occurrence)])
    n = len(tables["test"])

    def inputs(split, shuffle, start=0):  # image i is the one-hot vector e_i
        return tf.data.Dataset.from_tensor_slices((np.eye(n, dtype="float32"), ch.data.labels(split))).batch(3)

    # softmax(log p) = p: the classifier's logits are the logs of the table's probabilities
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(4, activation="softmax", use_bias=False,
                                                                    name="classifier")])
    for split in ("val", "test"):
        model.layers[-1].set_weights([np.log(tables[split])])
        result = ch.evaluate(f"hand_{split}", model, inputs)
        saved = pd.read_csv(ch.run.file("predictions", f"hand_{split}__{split}.csv"))
        np.testing.assert_allclose(saved[PROBS].to_numpy(), tables[split], atol=1e-6)
    row = pd.read_csv(ch.run.file("metrics", "hand_test.csv"), index_col=0).loc["hand_test"]
    assert row["Accuracy"] == pytest.approx(ACCURACY)
    assert row["F1-macro"] == pytest.approx(sum(F1.values()) / 4)
    assert row["ROC AUC"] == pytest.approx(AUC)
    assert row["FNFR"] == pytest.approx(FNFR)
    assert row["Loss"] == pytest.approx(LOSS, rel=1e-5)
    for name, value in F1.items():
        assert row[f"F1-{name}"] == pytest.approx(value)
    assert row["Inference time (s)"] > 0
    assert result.metrics.loc["hand_test", "Accuracy"] == pytest.approx(ACCURACY)


def test_train_model_saves_predictions_of_its_model_and_their_metrics(world):
    ch, tiny = world["scratch"], world["tiny"]
    live = ch.run.live
    for split in ("val", "test"):
        saved = pd.read_csv(live / "predictions" / f"tiny__{split}.csv")
        rows = ch.data.split(split)
        assert saved["Image Index"].tolist() == rows["Image Index"].tolist()
        assert saved["label"].tolist() == rows["label"].tolist()
        # the returned model, run by hand on the split's images, gives the saved probabilities
        again = tiny.model.predict(ch.data.images(split, 32)[..., None], verbose=0)
        np.testing.assert_allclose(saved[PROBS].to_numpy(), again, atol=1e-5)
    row = pd.read_csv(live / "metrics" / "tiny.csv", index_col=0).loc["tiny"]
    for column, value in independent_metrics(pd.read_csv(live / "predictions" / "tiny__test.csv")).items():
        assert row[column] == pytest.approx(value), column
    assert len(tiny.history) == 1  # epochs=1
    record = json.loads((live / "models" / "tiny.json").read_text())
    assert record["training"]["epochs"] == 1 and record["training"]["class_weight"] == ch["class_weight"]
    assert record["identity"] == tiny.identity
    assert record["did_not_learn"] is False  # one epoch: too few to call it chance



def test_the_saved_model_is_balanced_on_validation_and_only_there(world):
    """smoke balances predictions: each class's mean probability is its share of the validation labels, on
    validation only (the test split's mean probabilities are not fitted)."""
    assert world["scratch"]["balance_predictions"]
    live = world["scratch"].run.live
    frames = {split: pd.read_csv(live / "predictions" / f"tiny__{split}.csv") for split in ("val", "test")}
    shares = np.bincount(frames["val"]["label"], minlength=len(CLASSES)) / len(frames["val"])
    off = {split: np.abs(frame[PROBS].mean().to_numpy() - shares).max() for split, frame in frames.items()}
    assert off["val"] < 1e-6 and off["test"] > 100 * off["val"], off


def test_train_model_reuses_a_model_of_the_same_identity(world, capsys):
    from cxrlib.machinery.chapter import Chapter

    again = Chapter("scratch", "smoke", data_dir=str(world["folder"]), epochs=1, batch_size=8, **DATA)
    result = again.train_model("tiny", tiny_net, image_size=32)
    assert "[tiny] already trained with exactly these settings, data and code: reusing it" in capsys.readouterr().out
    assert result.identity == world["tiny"].identity
    pd.testing.assert_frame_equal(result.predictions["test"], world["tiny"].predictions["test"])
    other = Chapter("scratch", "smoke", data_dir=str(world["folder"]), epochs=1, batch_size=4, **DATA)
    assert other.train_model("tiny", tiny_net, image_size=32).identity != result.identity  # batch size changed


def test_a_later_chapter_reads_the_saved_metrics_rows(world):
    from cxrlib.machinery.chapter import Chapter

    reader = Chapter("hyperband", "smoke", data_dir=str(world["folder"]), **DATA)
    table = reader.metrics()
    saved = pd.read_csv(world["scratch"].run.live / "metrics" / "tiny.csv", index_col=0)
    assert "scratch/tiny" in table.index
    assert table.loc["scratch/tiny", "Accuracy"] == saved.loc["tiny", "Accuracy"]
    earlier = reader.earlier_metrics("scratch", "tiny")
    pd.testing.assert_frame_equal(earlier, saved)
    with pytest.raises(FileNotFoundError, match="no test predictions for scratch/nothing"):
        reader.earlier_metrics("scratch", "nothing")
    # a chapter on other data (another seed splits other patients) is refused, not mixed in
    other = Chapter("hyperband", "smoke", data_dir=str(world["folder"]), fractions=(0.6, 0.2, 0.2), seed=7)
    with pytest.raises(JoinError, match="cannot use chapter 'scratch': it ran on other data"):
        other.metrics()
    with pytest.raises(JoinError):
        other.earlier_metrics("scratch", "tiny")


def test_chapter_search_runs_hyperbands_trials_with_the_chapters_settings(world):
    from cxrlib.machinery.chapter import Chapter
    from cxrlib.machinery.parallel import chapter_search
    from cxrlib.machinery.parallel import trials_run
    from cxrlib.science.tuning import trials_table

    ch = Chapter("hyperband", "smoke", data_dir=str(world["folder"]), image_size=32, resize_to=28, batch_size=8,
                 hyperband_max_epochs=2, **DATA)
    assert ch["hyperband_factor"] == 3 and ch["tuner_workers"] == 0
    tuner = chapter_search(ch)
    table = trials_table(tuner)
    # Hyperband (keras-tuner's brackets) with at most 2 epochs and factor 3: floor(log3 2) + 1 = 1 bracket, of
    # ceil(1 + log3 2) = 2 configurations, each trained for the whole budget of 2 epochs
    assert len(table) == 2 and (table["status"] == "COMPLETED").all() and (table["epochs"] == 2).all()
    assert table["val_loss"].notna().all()
    assert str(tuner.project_dir).startswith(str(ch.run.file("work", "tuner")))
    ran = trials_run(tuner)
    assert sorted(ran["trial"]) == sorted(table["trial"]) and set(ran["tuner"]) == {"tuner0"}
    assert chapter_search(ch).oracle.trials.keys() == tuner.oracle.trials.keys()  # resumed, not searched again


def test_list_parameters_reach_the_notebook_as_lists():
    """`cxr run -p backbones=[vgg16] -p fractions=[0.7,0.15,0.15]`: papermill writes a tuple as its string, so the
    runner once injected BACKBONES = "('vgg16',)" and the chapter refused its own parameter."""
    from papermill.translators import PythonTranslator

    from cxrlib.machinery import runner
    from cxrlib.core.manifest import resolve_parameters

    params = runner.check_parameters({"BACKBONES": ["vgg16"], "FRACTIONS": [0.7, 0.15, 0.15],
                                      "CAPS": {"val": {"Effusion": 3}}}, ["pretrained"])
    scope: dict = {}
    exec(PythonTranslator.codify(runner.injected_parameters("pretrained", "full", None, params)), scope)
    assert scope["BACKBONES"] == ["vgg16"] and scope["FRACTIONS"] == [0.7, 0.15, 0.15]
    assert scope["CAPS"] == {"val": {"Effusion": 3}}
    settings, _ = resolve_parameters("pretrained", "full", {k.lower(): scope[k] for k in ("BACKBONES", "FRACTIONS")})
    assert settings["backbones"] == ("vgg16",) and settings["fractions"] == (0.7, 0.15, 0.15)
