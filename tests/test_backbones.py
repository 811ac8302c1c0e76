"""Pretrained backbones: the report's trainable counts, weights handling without network, CheXNet loading."""
from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from cxrlib.models import backbones, count_params


@pytest.fixture(scope="module")
def densenet():
    base = backbones.backbone("chexnet", 224)
    model = backbones.full_model("chexnet", base, backbones.head("chexnet", base.output.shape[1:]), 224)
    return base, model


@pytest.mark.parametrize("layer,trainable", [("conv5_block15_0_bn", 400_068), ("conv4_block1_0_bn", 5_594_244)])
def test_chexnet_fine_tuning_trainable_counts(densenet, layer, trainable):
    base, model = densenet
    backbones.unfreeze_from(base, layer)
    assert count_params(model) == {"total": 7_107_524, "trainable": trainable, "non_trainable": 7_107_524 - trainable}


def test_backbone_sizes_and_heads_match_the_report():
    vgg = backbones.backbone("vgg16", 224)
    assert count_params(vgg)["total"] == 14_714_688
    assert count_params(backbones.head("vgg16", vgg.output.shape[1:]))["total"] == 132_356
    assert count_params(backbones.backbone("resnet152", 224))["total"] == 58_370_944
    assert count_params(backbones.backbone("resnet50", 224))["total"] == 23_587_712
    with pytest.raises(ValueError, match="has no layer"):
        backbones.unfreeze_from(vgg, "no_such_layer")


def test_missing_imagenet_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    weights, text = backbones.imagenet_weights("vgg16")
    assert weights is None
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in text and str(tmp_path / "models") in text
    with pytest.raises(backbones.WeightsUnavailable, match="ALLOW_RANDOM_WEIGHTS"):
        backbones.pretrained_backbone("vgg16", 32, allow_random=False)
    model, text, pretrained = backbones.pretrained_backbone("vgg16", 32, allow_random=True)
    assert not pretrained and "no pretrained weights" in text


def test_cached_imagenet_file_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = backbones.keras_cache_file("vgg16")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"placeholder")
    assert backbones.imagenet_weights("vgg16") == (str(target), f"ImageNet ({target})")


def test_chexnet_file_loads_by_layer_name_skipping_the_14_class_top(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    donor_base = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(64, 64, 3),
                                                pooling="avg")
    donor = keras.Model(donor_base.input, keras.layers.Dense(14, activation="sigmoid", name="predictions")(
        donor_base.output))
    path = tmp_path / "chexnet_weights.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, donor)
    keras.utils.set_random_seed(2)
    model, text, pretrained = backbones.pretrained_backbone("chexnet", 64, allow_random=False, chexnet_file=path)
    assert pretrained and "CheXNet" in text
    for name in ("conv1_conv", "conv5_block16_2_conv", "bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_missing_chexnet_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        backbones.pretrained_backbone("chexnet", 32, allow_random=True, chexnet_file=tmp_path / "missing.h5")


def test_preprocessing_modes_match_keras_applications():
    image = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 1)).repeat(3, axis=-1).astype("float32")
    caffe = keras.Sequential(backbones.preprocessing("caffe"))(image)
    np.testing.assert_allclose(caffe, keras.applications.vgg16.preprocess_input(image.copy()), atol=1e-4)
    torch = keras.Sequential(backbones.preprocessing("torch"))(image)
    np.testing.assert_allclose(torch, keras.applications.densenet.preprocess_input(image.copy()), atol=1e-4)
