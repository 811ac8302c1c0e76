"""The `full` profile at toy size, through the real runner, on the chapters whose branches only `full` takes:
the pretrained chapter refuses to run without weights (no ALLOW_RANDOM_WEIGHTS), then, with an ImageNet file in
KERAS_HOME, fine-tunes from every one of the report's unfreeze points with the plain loss; the dataset chapter
splits 0.8 / 0.1 / 0.1 by patient, the caps cut every capped cell to exactly its cap, and min_per_split 10 refuses a
split below it. Only sizes, epochs and counts shrink; every other setting is the full profile's own."""
from __future__ import annotations

import json
import re

import h5py
import keras
import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES
from cxrlib.core.manifest import PROFILES
from cxrlib.machinery import runner
from cxrlib.core.backbones import BACKBONES
from tests.conftest import make_rows, write_folder
from tests.test_book import book_copy, outputs

PER_CLASS = 120  # images of each class, two per patient: 60 patients, 48 / 6 / 6 of them by 0.8 / 0.1 / 0.1
# caps below what the split holds (train 96 images, val 12, test 12 per class); test is left to the fractions
CAPS = {"train": {"No Finding": 20, "Effusion": 16, "Infiltration": 20, "Atelectasis": 12},
        "val": {c: 10 for c in CLASSES}}
TOY = {"BACKBONES": ["vgg16"], "BACKBONE_SIZE": 32, "EPOCHS": 1, "FINE_TUNE_EPOCHS": 1, "BATCH_SIZE": 8,
       "CAPS": CAPS}


def nih_folder(root):
    """NIH's layout (images_001/images/ and Data_Entry_2017.csv), 32 px images."""
    write_folder(root, make_rows(per_class=PER_CLASS))
    (root / "images_001").mkdir()
    (root / "images").rename(root / "images_001" / "images")
    return root


def donor_weights(path):
    """A seeded VGG16 base written as Keras's ImageNet file would be (HDF5, by layer name): the 'ImageNet' weights."""
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(123)
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, donor)
    return donor


@pytest.mark.book
def test_the_full_profile_refuses_missing_weights_caps_exactly_and_fine_tunes_from_every_point(isolated, monkeypatch):
    full = PROFILES["full"]
    assert full["fine_tune"] == "all" and full["class_weight"] == "none" and not full["allow_random_weights"]
    assert full["fractions"] == (0.8, 0.1, 0.1) and full["min_per_split"] == 10
    keras_home = isolated / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))  # empty: no ImageNet file
    folder = nih_folder(isolated / "nih")
    root = book_copy(isolated)
    run = dict(profile="full", data_dir=str(folder), book_root=root, log=lambda line: None)

    # 1. no weights and no ALLOW_RANDOM_WEIGHTS: the chapter stops, naming the file and where it belongs
    with pytest.raises(runner.RunnerError) as refused:
        runner.run_chapters(["pretrained"], params=dict(TOY), **run)
    first = str(refused.value).splitlines()[0]
    weights_file = BACKBONES["vgg16"].weights_file
    assert "WeightsUnavailable: no pretrained weights" in first
    assert f"place {weights_file}" in first and f"in {keras_home / 'models'}/" in first
    assert first.endswith("Set ALLOW_RANDOM_WEIGHTS=True to run without them.")
    assert not (root / "book" / "chapters" / "pretrained.ipynb").exists()  # nothing published
    assert (root / "book" / "chapters" / "pretrained.failed.ipynb").is_file()

    # 2. a split below min_per_split is refused before any chapter runs
    with pytest.raises(runner.RunnerError, match=r"Atelectasis has 9 in val.*at least 10 \(min_per_split\)"):
        runner.run_chapters(["dataset"], params={"CAPS": {"val": {"Atelectasis": 9}}}, **run)

    # 3. with an ImageNet file in KERAS_HOME, both chapters run with the full settings
    donor = donor_weights(keras_home / "models" / weights_file)
    assert runner.run_chapters(["dataset", "pretrained"], params=dict(TOY), **run) == ["dataset", "pretrained"]

    # the caps cut every capped cell to exactly its cap; test keeps the 0.1 of each class's 60 patients: 6 x 2
    train, val, test = sum(CAPS["train"].values()), 10 * 4, 12 * 4
    dataset_page = outputs(root / "book" / "chapters" / "dataset.ipynb")
    assert re.search(rf"used {train + val + test} images of \d+ patients \(train {train} from \d+, val {val} from "
                     rf"\d+, test {test} from \d+\)", dataset_page)
    live = isolated / "runs" / "full" / "pretrained"
    for split, expected in (("val", CAPS["val"]), ("test", {c: 12 for c in CLASSES})):
        saved = pd.read_csv(live / "predictions" / f"vgg16_features__{split}.csv")
        assert saved["label"].map(dict(enumerate(CLASSES))).value_counts().to_dict() == expected
    patients = pd.read_csv(live / "predictions" / "vgg16_features__test.csv")["Image Index"].str[:8]
    assert patients.nunique() == 6 * 4  # whole patients: both images of each of 6 per class
    settings = json.loads((isolated / "runs" / "full" / "dataset" / "chapter.json").read_text())["settings"]
    assert tuple(settings["fractions"]) == (0.8, 0.1, 0.1) and settings["caps"] == CAPS

    # every one of the report's unfreeze points (4.1.3.2 from block5_conv1, 4.1.3.3 from block3_conv1), plain loss
    models = sorted(p.stem for p in (live / "models").glob("vgg16_finetune_*.keras"))
    assert models == ["vgg16_finetune_block3_conv1", "vgg16_finetune_block5_conv1"]
    for name in ("vgg16_features", *models):
        record = json.loads((live / "models" / f"{name}.json").read_text())
        assert record["training"]["class_weight"] == "none"
    # the backbone started from the file in KERAS_HOME, and the page says so
    info = json.loads((live / "chapter.json").read_text())
    assert info["weights"]["vgg16"]["pretrained"] and info["weights"]["vgg16"]["short"] == "ImageNet (Keras's cache)"
    assert "ImageNet (" in outputs(root / "book" / "chapters" / "pretrained.ipynb")
    import cxrlib.science.models  # noqa: F401  (the custom layers)

    joined = keras.models.load_model(live / "models" / "vgg16_features_on_images.keras", compile=False)
    for ours, theirs in zip(joined.get_layer("vgg16").get_layer("block1_conv1").get_weights(),
                            donor.get_layer("block1_conv1").get_weights()):
        np.testing.assert_array_equal(ours, theirs)
