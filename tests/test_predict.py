"""`cxr predict` on a tiny model trained and saved by the library's own chapter calls: it agrees with the
chapter's saved test predictions, reads a 16-bit copy as its 8-bit original, predicts the rest of a folder
with one broken file and names that one, refuses images under the minimum size and models whose input size or
classes do not match, applies only a temperature fitted for this very model, and keeps TensorFlow's start-up
lines off the console."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SAMPLE
from cxrlib.core.config import CLASSES
from cxrlib.core.frames import probability_columns
from cxrlib.machinery import cli
from cxrlib.machinery import predict, runner

SAVED = probability_columns()  # the chapters' saved predictions
PROBS = predict.PROBABILITY_COLUMNS
COLUMNS = ["file", *PROBS, "predicted", "temperature", "temperature_status", "gradcam_file", "error"]


def tiny_net(image_size: int):
    """A seeded, fast classifier with the book's input layer and a softmax layer named 'classifier'."""
    import keras

    from cxrlib.science.models.inputs import grey_input

    inputs, x = grey_input(image_size)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax", name="classifier")(x),
                       name="tiny")


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    """The fused chapter's run folder (smoke, the real sample) holding one trained tiny model, in a tmp folder."""
    from cxrlib.machinery.chapter import Chapter
    from cxrlib.machinery.runs import RUNNER_ENV

    base = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_CACHE_DIR", str(base / "cache"))
        patch.setenv("CXR_RUNS_DIR", str(base / "runs"))
        patch.setenv("CXR_SAMPLE_DIR", str(SAMPLE))
        patch.delenv("CXR_DATA_DIR", raising=False)
        patch.delenv(RUNNER_ENV, raising=False)
        ch = Chapter("fused", "smoke", epochs=1)
        ch.train_model("tiny", tiny_net, image_size=32)
        ch.finish()
        yield ch


def test_predict_agrees_with_the_chapters_saved_test_predictions(chapter, tmp_path):
    saved = pd.read_csv(chapter.run.live / "predictions" / "tiny__test.csv").set_index("Image Index").head(6)
    paths = chapter.data.source.paths(saved.index)
    output = tmp_path / "out.csv"
    assert cli.main(["predict", *map(str, paths), "--model", "fused/tiny", "--profile", "smoke",
                        "-o", str(output)]) == 0
    table = pd.read_csv(output, keep_default_na=False)
    assert table.columns.tolist() == COLUMNS == ["file", "p_no_finding", "p_effusion", "p_infiltration",
                                                 "p_atelectasis", *COLUMNS[5:]]
    assert table["file"].tolist() == [str(p) for p in paths]
    assert np.abs(table[PROBS].to_numpy(float) - saved[SAVED].to_numpy()).max() < 1e-6
    assert table["predicted"].tolist() == [CLASSES[k] for k in saved["pred"]]
    assert set(table["temperature"]) == {""} and set(table["temperature_status"]) == {"none (not fitted)"}
    assert set(table["error"]) == {""} and set(table["gradcam_file"]) == {""}
    first = output.read_text().splitlines()[1].split(",")
    assert all(len(field.split(".")[1]) == predict.DECIMALS for field in first[1:5])


def test_a_16_bit_copy_gives_the_same_prediction_as_its_8_bit_original(chapter, tmp_path):
    name = chapter.data.split("test")["Image Index"].iloc[0]
    original = chapter.data.source.paths([name])[0]
    pixels = np.asarray(Image.open(original).convert("L"), np.uint16)
    wide = tmp_path / "wide.png"
    Image.fromarray(pixels * 257).save(wide)  # the same picture filling 16 bits
    assert Image.open(wide).mode.startswith("I")
    saved = predict.load_saved_model("fused/tiny", "smoke")
    table = predict.predict_files([original, wide], saved)
    assert (table["error"] == "").all()
    assert np.array_equal(table.loc[0, PROBS].to_numpy(float), table.loc[1, PROBS].to_numpy(float))


def test_a_folder_with_one_broken_file_predicts_the_rest_and_names_it(chapter, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in chapter.data.split("test")["Image Index"].head(3):
        shutil.copy(chapter.data.source.paths([name])[0], folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    (folder / "notes.txt").write_text("not an image: left alone")
    output, overlays = tmp_path / "out.csv", tmp_path / "overlays"
    code = cli.main(["predict", str(folder), "--model", "fused/tiny", "--profile", "smoke", "-o", str(output),
                        "--gradcam", str(overlays)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"cxr predict: {folder / 'broken.png'}: ")
    table = pd.read_csv(output, keep_default_na=False).set_index("file")
    assert len(table) == 4 and table.loc[str(folder / "broken.png"), "error"] == err[0].split(": ", 2)[2]
    assert table.loc[str(folder / "broken.png"), [*PROBS, "predicted", "gradcam_file"]].eq("").all()
    good = table.drop(str(folder / "broken.png"))
    drawn = good["gradcam_file"][good["gradcam_file"] != ""]  # a map with no spatial information draws nothing
    assert len(drawn) and sorted(p.name for p in overlays.glob("*.png")) == sorted(Path(f).name for f in drawn)
    assert drawn.str.endswith(".gradcam.png").all() and good["error"].eq("").all()


def test_an_image_under_the_minimum_size_is_refused_in_one_line(chapter, tmp_path, capsys):
    name = chapter.data.split("test")["Image Index"].iloc[0]
    tiny, wide = tmp_path / "tiny.png", tmp_path / "narrow.png"
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tiny)  # 2x1 px
    Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (predict.MIN_SIDE - 1, 1))).save(wide)
    paths = [chapter.data.source.paths([name])[0], tiny, tmp_path / "absent.png", wide]
    output = tmp_path / "out.csv"
    assert cli.main(["predict", *map(str, paths), "--model", "fused/tiny", "--profile", "smoke",
                        "-o", str(output)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cxr predict: {tiny}: 2x1 px, below the minimum of {predict.MIN_SIDE} px on the short side",
                   f"cxr predict: {tmp_path / 'absent.png'}: no such file or folder",
                   f"cxr predict: {wide}: 50x{predict.MIN_SIDE - 1} px, below the minimum of {predict.MIN_SIDE} px "
                   f"on the short side"]
    table = pd.read_csv(output, keep_default_na=False)
    assert table["file"].tolist() == [str(p) for p in paths]
    assert table["error"].tolist() == ["", *(line.split(": ", 2)[2] for line in err)]
    assert table["predicted"].tolist()[1:] == ["", "", ""] and table.loc[0, "predicted"] in CLASSES


def test_a_map_without_spatial_information_is_named_not_drawn(chapter, tmp_path):
    saved = predict.load_saved_model("fused/tiny", "smoke")
    flat = np.full((saved.size, saved.size), 128, np.uint8)  # constant input: a constant map
    assert predict.write_overlay(saved, flat, 0, tmp_path / "flat.png") == ""
    assert not (tmp_path / "flat.png").exists()


def save_model(chapter, name: str, model, spec: dict) -> None:
    """A model and its record in the chapter's live run folder."""
    model.save(chapter.run.live / "models" / f"{name}.keras")
    (chapter.run.live / "models" / f"{name}.json").write_text(json.dumps({"spec": spec}))


def test_models_whose_input_size_or_classes_do_not_match_are_refused(chapter, capsys):
    import keras

    from cxrlib.science.models.inputs import grey_input

    save_model(chapter, "wrong_size", tiny_net(32), {"image_size": 96})
    inputs, x = grey_input(32)
    x = keras.layers.GlobalAveragePooling2D()(x)
    save_model(chapter, "three_classes", keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                                                  name="classifier")(x)),
               {"image_size": 32})
    for model, words in (("fused/wrong_size", "takes 32x32 images, but its record says it was trained on 96 px"),
                         ("fused/three_classes", "outputs 3 classes; cxr predict needs 4: No Finding, Effusion"),
                         ("fused/absent", "models saved there: "), ("fused", "not of the form CHAPTER/MODEL")):
        assert cli.main(["predict", str(SAMPLE), "--model", model, "--profile", "smoke"]) == 2
        assert words in capsys.readouterr().err


def saved_temperature(chapter, fit, made=None) -> None:
    """A temperatures.json in another chapter's folder of the profile, as the ensemble chapter saves it; made: the
    model identity it records (default: the tiny model's own)."""
    from cxrlib.machinery.runs import ChapterRun
    from cxrlib.science.calibration import TemperatureFit

    run = ChapterRun("smoke", "ensemble", root=chapter.runs_root)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_temperatures({"fused/tiny": TemperatureFit(*fit)})
    if made is not None:
        entries = json.loads((run.path / "temperatures.json").read_text())
        entries["fused/tiny"]["model_identity"] = made
        (run.path / "temperatures.json").write_text(json.dumps(entries))


@pytest.fixture
def first_image(chapter, tmp_path):
    """(the first test image, its saved test predictions' row); the temperatures.json saved is removed after."""
    name = chapter.data.split("test")["Image Index"].iloc[0]
    yield chapter.data.source.paths([name])[0], pd.read_csv(chapter.run.live / "predictions" / "tiny__test.csv"
                                                       ).set_index("Image Index").loc[name]
    shutil.rmtree(chapter.run.profile_dir / "ensemble", ignore_errors=True)


def test_a_temperature_fitted_for_this_model_is_applied_and_said(chapter, first_image, tmp_path):
    path, row = first_image
    saved_temperature(chapter, (2.0, False))
    output = tmp_path / "out.csv"
    assert cli.main(["predict", str(path), "--model", "fused/tiny", "--profile", "smoke", "-o", str(output)]) == 0
    table = pd.read_csv(output)
    logits = np.log(row[SAVED].to_numpy(float))
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    assert np.abs(table.loc[0, PROBS].to_numpy(float) - expected).max() < 1e-6
    assert table.loc[0, "temperature"] == 2.0 and table.loc[0, "temperature_status"] == predict.APPLIED


@pytest.mark.parametrize("fit, made, status", [((100.0, True), None, "none (search bound)"),
                                               ((2.0, False), "an earlier training", "none (fitted on another training)")])
def test_a_temperature_at_a_bound_or_of_another_training_is_not_applied(chapter, first_image, tmp_path, fit, made,
                                                                        status):
    path, row = first_image
    saved_temperature(chapter, fit, made)
    output = tmp_path / "out.csv"
    assert cli.main(["predict", str(path), "--model", "fused/tiny", "--profile", "smoke", "-o", str(output)]) == 0
    table = pd.read_csv(output)
    assert np.abs(table.loc[0, PROBS].to_numpy(float) - row[SAVED].to_numpy(float)).max() < 1e-6  # the model's own
    assert np.isnan(table.loc[0, "temperature"]) and table.loc[0, "temperature_status"] == status


def test_tensorflow_start_up_lines_stay_off_the_console(chapter, first_image, tmp_path):
    path, _ = first_image
    done = subprocess.run([sys.executable, "-m", "cxrlib.machinery.cli", "predict", str(path), "--model",
                           "fused/tiny", "--profile", "smoke", "-o", str(tmp_path / "out.csv")],
                          capture_output=True, text=True,  # as from a shell that sets no TensorFlow variable
                          env={k: v for k, v in os.environ.items() if not k.startswith("TF_")})
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if any(word in line.lower() for word in
                                                                 ("onednn", "cuda", "absl", "tensorflow"))]
    assert "1 image(s) predicted with fused/tiny" in done.stdout


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "cxr predict new_scans/ chest.jpg --model fused/fused" in capsys.readouterr().out


def test_the_readme_states_the_minimum_size_and_the_precision():
    from cxrlib.core.config import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    assert f"under {predict.MIN_SIDE} px on its short side" in readme
    assert f"each class's probability, {predict.DECIMALS} decimals" in readme
    assert all(f"`{column}`" in readme for column in COLUMNS)


def test_probability_columns_are_named_and_read_back_by_one_rule():
    from cxrlib.core.frames import column_classes

    assert probability_columns(["No Finding", "Effusion"]) == ["p_No Finding", "p_Effusion"]
    assert column_classes(["Image Index", *probability_columns(), "pred"]) == list(CLASSES)
