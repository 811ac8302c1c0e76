"""The pretrained chapter's procedure (cxrlib.machinery.transfer) and the analysis chapters' model loading (cxrlib.machinery.analysis),
outside any notebook: VGG16 at 32 px on the tiny NIH folder, one epoch, seeded random weights (the suite's
KERAS_HOME is empty and offline). Each function's result is checked against an independent computation or
the report's text, not just that it ran."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.frames import probability_columns
from tests.conftest import toy_world
from tests.test_chapter_units import independent_metrics

PROBS = probability_columns()
SETTINGS = {"fractions": (0.6, 0.2, 0.2), "seed": 42}
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The pretrained chapter with one backbone (VGG16) and its first unfreeze point, run and promoted."""
    from cxrlib.machinery.chapter import Chapter
    from cxrlib.machinery.transfer import flow_findings, run_backbone

    with toy_world(tmp_path_factory, "transfer-units", KERAS_HOME="keras-home") as (_, folder):  # no ImageNet file
        ch = Chapter("pretrained", "smoke", data_dir=str(folder), backbones=("vgg16",), backbone_size=32, epochs=1,
                     fine_tune="first", fine_tune_epochs=1, batch_size=8, augmented_copies=2, **SETTINGS)
        run = run_backbone(ch, "vgg16")
        findings = flow_findings(ch, {"vgg16": run})
        ch.finish()
        yield {"ch": ch, "run": run, "folder": folder, "findings": findings}


def test_fine_tune_points_are_the_reports_unfreeze_layers():
    from cxrlib.science.models.backbones import fine_tune_points

    # the report's section 4: VGG16 from block5_conv1 (4.1.3.2, 3 conv layers) and block3_conv1 (4.1.3.3, 9),
    # ResNet50 from conv5_block3_3_conv (4.2.4.2), CheXNet from conv5_block15_0_bn (4.3.2.2) and conv4_block1_0_bn
    # (4.3.3.3, two dense blocks)
    assert fine_tune_points("vgg16", "all") == ("block5_conv1", "block3_conv1")
    assert fine_tune_points("resnet50", "all") == ("conv5_block3_3_conv",)
    # ResNet152 from its last 2 and 6 weighted layers (4.2.3.2, 4.2.2.1), then the last 50 and 150 (4.2.3.3-4)
    assert fine_tune_points("resnet152", "all")[2:] == ("conv4_block32_1_conv", "conv4_block15_2_conv")
    assert fine_tune_points("chexnet", "all") == ("conv5_block15_0_bn", "conv4_block1_0_bn")
    assert fine_tune_points("vgg16", "first") == ("block5_conv1",)
    assert fine_tune_points("chexnet", "none") == ()


def test_run_backbone_trains_the_head_then_fine_tunes_from_the_first_point(pretrained):
    ch, run = pretrained["ch"], pretrained["run"]
    assert list(run.results) == ["vgg16_features", "vgg16_finetune_block5_conv1"]
    assert not run.pretrained and "no pretrained weights" in run.weights.short
    assert run.label == "VGG16 (no pretrained weights)"
    recorded = json.loads((ch.run.live / "chapter.json").read_text())["weights"]  # a field per backbone
    assert recorded == {"vgg16": {"title": "VGG16", "pretrained": False, "short": run.weights.short,
                                  "long": run.weights.long}}
    live = ch.run.live
    for name, result in run.results.items():
        saved = pd.read_csv(live / "predictions" / f"{name}__test.csv")
        assert saved["Image Index"].tolist() == ch.data.split("test")["Image Index"].tolist()
        row = pd.read_csv(live / "metrics" / f"{name}.csv", index_col=0).loc[name]
        for column, value in independent_metrics(saved).items():
            assert row[column] == pytest.approx(value), (name, column)
        assert result.metrics.loc[name, "Accuracy"] == row["Accuracy"]
    head = json.loads((live / "models" / "vgg16_features.json").read_text())
    tuned = json.loads((live / "models" / "vgg16_finetune_block5_conv1.json").read_text())
    assert head["spec"]["stage"] == "features" and head["training"]["learning_rate"] == 1e-3  # feature_learning_rate
    assert tuned["spec"]["from"] == "block5_conv1" and tuned["spec"]["augment"] is True  # 4.1.3: VGG16 with DA
    assert tuned["training"]["learning_rate"] == 1e-5 and tuned["training"]["epochs"] == 1  # fine tuning's own
    assert tuned["upstream"] == [run.results["vgg16_features"].identity]  # starts from the trained head


def test_backbone_features_are_the_frozen_backbone_on_its_preprocessed_images(pretrained):
    import keras

    from cxrlib.core.config import cache_dir
    from cxrlib.machinery.transfer import backbone_features, load_backbone

    ch = pretrained["ch"]
    base, used = load_backbone(ch, "vgg16")  # seeded: the same random weights run_backbone used
    weights = used.long
    features = backbone_features(ch, "vgg16", base, weights)
    cached = sorted((cache_dir() / "features").glob("*.npy"))
    again = backbone_features(ch, "vgg16", base, weights)
    assert sorted((cache_dir() / "features").glob("*.npy")) == cached  # computed once, then served from the cache
    for split in SPLITS:
        images = ch.data.images(split, 32).astype("float32")
        # Keras's own VGG16 preprocessing (RGB -> BGR, ImageNet means subtracted) of the grey image copied thrice
        rgb = keras.applications.vgg16.preprocess_input(np.repeat(images[..., None], 3, axis=-1))
        expected = base.predict(rgb, verbose=0)
        assert features[split].shape == (len(ch.data.split(split)), 1, 1, 512)  # 32 px / 2^5, 512 channels
        np.testing.assert_allclose(features[split], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(again[split], features[split])


def test_evaluate_on_images_saves_the_head_joined_to_its_backbone_with_the_same_predictions(pretrained):
    import keras

    import cxrlib.science.models  # noqa: F401  (the custom layers)
    from cxrlib.machinery.transfer import images_model_name

    ch, run = pretrained["ch"], pretrained["run"]
    joined = keras.models.load_model(ch.run.live / "models" / f"{images_model_name('vgg16')}.keras", compile=False)
    assert joined.input.shape[1:] == (32, 32, 1)
    saved = pd.read_csv(ch.run.live / "predictions" / "vgg16_features__test.csv")
    images = ch.data.images("test", 32)[..., None]
    np.testing.assert_allclose(joined.predict(images, verbose=0), saved[PROBS].to_numpy(), atol=1e-5)
    # the head alone on the cached features predicts the same
    from cxrlib.machinery.transfer import backbone_features, load_backbone

    base, used = load_backbone(ch, "vgg16")
    weights = used.long
    head = run.results["vgg16_features"].model
    on_features = head.predict(backbone_features(ch, "vgg16", base, weights)["test"], verbose=0)
    np.testing.assert_allclose(on_features, saved[PROBS].to_numpy(), atol=1e-5)


@pytest.mark.parametrize("layer,conv_layers", [("block5_conv1", 3), ("block3_conv1", 9)])
def test_fine_tune_model_thaws_the_reports_layers_under_the_trained_head(pretrained, layer, conv_layers):
    import keras

    from cxrlib.machinery.transfer import fine_tune_model

    ch, head = pretrained["ch"], pretrained["run"].results["vgg16_features"].model
    before = [w.copy() for w in head.get_weights()]
    model = fine_tune_model(ch, "vgg16", head, layer, augment=False)
    base = model.get_layer("vgg16")
    thawed = [lyr.name for lyr in base.layers if lyr.trainable and isinstance(lyr, keras.layers.Conv2D)]
    assert len(thawed) == conv_layers and thawed[0] == layer  # 4.1.3.2: 3 conv layers; 4.1.3.3: 9
    top = model.layers[-1]
    for ours, trained in zip(top.get_weights(), before):
        np.testing.assert_array_equal(ours, trained)  # the trained head, copied
    top.set_weights([w + 1 for w in top.get_weights()])
    for ours, trained in zip(head.get_weights(), before):
        np.testing.assert_array_equal(ours, trained)  # a copy: the trained head itself is untouched
    augmented = fine_tune_model(ch, "vgg16", head, layer, augment=True)
    assert len(augmented.layers) == len(model.layers) + 1  # the augmentation block, before the preprocessing


def test_image_model_and_chosen_models_give_models_that_take_images(pretrained):
    from cxrlib.machinery import analysis
    from cxrlib.machinery.chapter import Chapter

    reader = Chapter("error_analysis", "smoke", data_dir=str(pretrained["folder"]), readonly=True, **SETTINGS)
    images = reader.data.images("test", 32)[..., None]
    for key in ("pretrained/vgg16_features", "pretrained/vgg16_finetune_block5_conv1"):
        model = analysis.image_model(reader, key)
        assert model.input.shape[1:] == (32, 32, 1)  # a features head comes back joined to its backbone
        saved = reader.earlier("pretrained", key.split("/")[1])
        np.testing.assert_allclose(model.predict(images, verbose=0), saved[PROBS].to_numpy(), atol=1e-5)
    chosen = analysis.chosen_models(reader, {"VGG16": "pretrained/vgg16_features"})
    assert list(chosen) == ["VGG16 (no pretrained weights)"]  # tagged: the chapter recorded random weights
    assert chosen["VGG16 (no pretrained weights)"].input.shape[1:] == (32, 32, 1)


def test_every_head_of_the_flow_trains_and_the_kept_one_is_the_saved_model(pretrained):
    from cxrlib.core.frames import probabilities
    from cxrlib.science.metrics import macro_f1

    ch, run = pretrained["ch"], pretrained["run"]
    assert list(run.heads) == ["4.1.1.1", "4.1.1.2", "4.1.1.3", "4.1.1.4"]  # the report's order
    kept = run.heads["4.1.1.4"]  # the report's choice, the one fine tuning starts from
    saved = pd.read_csv(ch.run.live / "histories" / "vgg16_features.csv")
    np.testing.assert_allclose(kept.history["val_loss"], saved["val_loss"])
    val = pd.read_csv(ch.run.live / "predictions" / "vgg16_features__val.csv")
    np.testing.assert_allclose(kept.val_probs, probabilities(val))
    spec = json.loads((ch.run.live / "models" / "vgg16_features.json").read_text())["spec"]
    assert spec["head"] == "4.1.1.4" and spec["augmented copies"] == 2  # copies of augmented features
    # 32 px: VGG16's map is 1 x 1 x 512, so the flattened Dense 256 has 512 * 256 + 256 + 256 * 4 + 4 weights
    assert run.heads["4.1.1.1"].params == run.heads["4.1.1.2"].params == 132_356 == kept.params
    y_val = ch.data.labels("val")
    for section, fit in run.heads.items():
        assert len(fit.history) >= 1 and fit.val_probs.shape == (len(y_val), 4)
        np.testing.assert_allclose(fit.val_probs.sum(axis=1), 1, atol=1e-6)
        assert run.scores[section] == macro_f1(y_val, fit.val_probs.argmax(axis=1))
    best = max(run.scores.values())
    assert run.scores[run.chosen] == best
    assert run.chosen == "4.1.1.4" or run.scores["4.1.1.4"] < best  # equals: the report's own choice
    earlier = list(run.heads)[:list(run.heads).index(run.chosen)]
    assert all(run.scores[s] < best for s in earlier if s != "4.1.1.4")  # then the first of equals
    assert run.smaller.head == run.heads[run.chosen].head
    assert run.smaller_text.startswith("half the training patients")


def test_heads_with_augmentation_read_features_of_augmented_copies(pretrained):
    from cxrlib.core.config import cache_dir
    from cxrlib.machinery.transfer import augmented_features, backbone_features, load_backbone

    ch = pretrained["ch"]
    base, used = load_backbone(ch, "vgg16")
    before = sorted((cache_dir() / "features").glob("*.npy"))
    copies = augmented_features(ch, "vgg16", base, used.long)
    assert sorted((cache_dir() / "features").glob("*.npy")) == before  # both copies came from the cache
    n = len(ch.data.split("train"))
    assert copies.shape == (2 * n, 1, 1, 512)
    plain = backbone_features(ch, "vgg16", base, used.long)["train"].mean(axis=(1, 2), keepdims=True)
    assert not np.allclose(copies[:n], copies[n:]) and not np.allclose(copies[:n], plain)  # two augmentations


def test_flow_findings_answer_each_step_from_the_paired_bootstrap(pretrained):
    from cxrlib.machinery.transfer import BOOTSTRAP_STREAM, FINDINGS_COLUMNS, stream_seed
    from cxrlib.present.claims import answer, units
    from cxrlib.science.metrics import cross_entropy
    from cxrlib.science.stats import Bootstrap

    ch, run, findings = pretrained["ch"], pretrained["run"], pretrained["findings"]
    saved = pd.read_csv(ch.run.live / "findings.csv")
    assert saved.columns.tolist() == FINDINGS_COLUMNS and len(saved) == 4  # VGG16's three steps, and more data
    assert saved["step"].tolist() == ["head flow"] * 3 + ["more data"]
    pd.testing.assert_frame_equal(saved, findings, check_dtype=False)
    val = ch.data.split("val")
    boot = Bootstrap(val["label"], val["Patient ID"], ch["bootstrap"], stream_seed(ch["seed"], BOOTSTRAP_STREAM))
    where = units(len(val), val["Patient ID"].nunique(), "validation")
    pairs = [("4.1.1.1", "4.1.1.2"), ("4.1.1.2", "4.1.1.3"), ("4.1.1.3", "4.1.1.4")]
    probs = [(run.heads[a].val_probs, run.heads[b].val_probs) for a, b in pairs]
    probs.append((run.smaller.val_probs, run.heads[run.chosen].val_probs))
    for (_, row), (before, after) in zip(saved.iterrows(), probs):
        found = boot.difference(before, after, "Loss")
        losses = cross_entropy(val["label"], before), cross_entropy(val["label"], after)
        assert row["difference"] == pytest.approx(losses[0] - losses[1])
        assert (row["low"], row["high"]) == pytest.approx((found.low, found.high))
        assert row["our answer"] == answer(found, where)
        assert (row["images"], row["patients"]) == (len(val), val["Patient ID"].nunique())
    assert saved["question"][0] == ("VGG16 (no pretrained weights): adding dropout lowered validation loss "
                                    "(4.1.1.1 to 4.1.1.2)")
    assert saved["report's answer"][2].startswith("no: ")
    assert "more training data lowered validation loss" in saved["question"][3]
