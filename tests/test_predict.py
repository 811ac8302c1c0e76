"""`cxr predict` on a tiny model trained and saved by the library's own chapter calls: it agrees with the
chapter's saved test predictions, reads a 16-bit copy as its 8-bit original, predicts the rest of a folder
with one broken file and names that one, and refuses models whose input size or classes do not match."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SAMPLE
from cxrlib.core.config import CLASSES
from cxrlib.machinery import cli
from cxrlib.machinery import predict, runner

PROBS = [f"p_{c}" for c in CLASSES]


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
    paths = [chapter.data.source.paths[name] for name in saved.index]
    output = tmp_path / "out.csv"
    assert cli.main(["predict", *map(str, paths), "--model", "fused/tiny", "--profile", "smoke",
                        "-o", str(output)]) == 0
    table = pd.read_csv(output)
    assert table["file"].tolist() == [str(p) for p in paths]
    assert np.abs(table[PROBS].to_numpy() - saved[PROBS].to_numpy()).max() < 1e-6
    assert table["predicted"].tolist() == [CLASSES[k] for k in saved["pred"]]
    assert set(table["temperature scaling"]) == {predict.NOT_APPLIED}


def test_a_16_bit_copy_gives_the_same_prediction_as_its_8_bit_original(chapter, tmp_path):
    name = chapter.data.split("test")["Image Index"].iloc[0]
    original = chapter.data.source.paths[name]
    pixels = np.asarray(Image.open(original).convert("L"), np.uint16)
    wide = tmp_path / "wide.png"
    Image.fromarray(pixels * 257).save(wide)  # the same picture filling 16 bits
    assert Image.open(wide).mode.startswith("I")
    saved = predict.load_saved_model("fused/tiny", "smoke")
    table, failed = predict.predict_files([original, wide], saved)
    assert not failed
    assert np.array_equal(table.loc[0, PROBS].to_numpy(float), table.loc[1, PROBS].to_numpy(float))


def test_a_folder_with_one_broken_file_predicts_the_rest_and_names_it(chapter, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in chapter.data.split("test")["Image Index"].head(3):
        shutil.copy(chapter.data.source.paths[name], folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    (folder / "notes.txt").write_text("not an image: left alone")
    output, overlays = tmp_path / "out.csv", tmp_path / "overlays"
    code = cli.main(["predict", str(folder), "--model", "fused/tiny", "--profile", "smoke", "-o", str(output),
                        "--gradcam", str(overlays)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"cxr predict: {folder / 'broken.png'}: ")
    table = pd.read_csv(output)
    assert len(table) == 3 and "broken.png" not in " ".join(table["file"])
    assert sorted(p.name for p in overlays.glob("*.png")) == sorted(f"{p.stem}.gradcam.png" for p in folder.glob("0*"))
    assert table["gradcam"].str.endswith(".gradcam.png").all()


def test_a_map_without_spatial_information_is_named_not_drawn(chapter, tmp_path):
    saved = predict.load_saved_model("fused/tiny", "smoke")
    flat = np.full((saved.size, saved.size), 128, np.uint8)  # constant input: a constant map
    assert "no spatial information" in predict.write_overlay(saved, flat, 0, tmp_path / "flat.png")
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


def test_a_saved_temperature_is_applied_and_said(chapter, tmp_path):
    record = chapter.run.live / "models" / "tiny.json"
    original = record.read_text()
    record.write_text(json.dumps({**json.loads(original), "temperature": 2.0}))
    try:
        saved = predict.load_saved_model("fused/tiny", "smoke")
        name = chapter.data.split("test")["Image Index"].iloc[0]
        table, _ = predict.predict_files([chapter.data.source.paths[name]], saved)
    finally:
        record.write_text(original)
    row = pd.read_csv(chapter.run.live / "predictions" / "tiny__test.csv").set_index("Image Index").loc[name]
    logits = np.log(row[PROBS].to_numpy(float))
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    assert np.abs(table.loc[0, PROBS].to_numpy(float) - expected).max() < 1e-6
    assert table.loc[0, "temperature scaling"].startswith("applied (T = 2")


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "cxr predict new_scans/ chest.jpg --model fused/fused" in capsys.readouterr().out
