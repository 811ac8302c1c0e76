"""Pretrained backbones: the report's trainable counts, weights handling without network, CheXNet loading."""
from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from cxrlib.machinery import weights as weight_files
from cxrlib.present.report import FLOWS
from cxrlib.core.backbones import BACKBONES
from cxrlib.science.models import backbones, count_params


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
    assert count_params(vgg)["total"] == 14_714_688 and vgg.output.shape[1:] == REPORT_FEATURES["vgg16"]
    assert count_params(backbones.head("vgg16", vgg.output.shape[1:]))["total"] == 132_356
    resnet = backbones.backbone("resnet152", 224)
    assert count_params(resnet)["total"] == 58_370_944 and resnet.output.shape[1:] == REPORT_FEATURES["resnet152"]
    assert count_params(backbones.backbone("resnet50", 224))["total"] == 23_587_712
    with pytest.raises(ValueError, match="has no layer"):
        backbones.unfreeze_from(vgg, "no_such_layer")


# the backbones' feature maps at the report's 224 px (the two ResNets' are checked above, DenseNet's in 4.3.1.1's text)
REPORT_FEATURES = {"vgg16": (7, 7, 512), "resnet152": (7, 7, 2048), "resnet50": (7, 7, 2048), "chexnet": (7, 7, 1024)}
STATED = [(name, head) for name, spec in BACKBONES.items() for head in spec.heads
          if head.section in FLOWS and FLOWS[head.section][5]]


@pytest.mark.parametrize("name,head", STATED, ids=[head.section for _, head in STATED])
def test_each_head_has_the_reports_parameter_count_at_its_size(name, head):
    built = backbones.head(name, REPORT_FEATURES[name], head)  # heads only: no backbone, no weights
    assert count_params(built) == {"total": FLOWS[head.section][5], "trainable": FLOWS[head.section][5],
                                   "non_trainable": 0}


def test_every_head_of_the_flows_is_built_from_its_spec():
    assert [h.section for _, h in STATED] == ["4.1.1.2", "4.1.1.3", "4.3.1.1", "4.3.1.3"]
    counts = {h.section: count_params(backbones.head(n, REPORT_FEATURES[n], h))["total"]
              for n, spec in BACKBONES.items() for h in spec.heads}
    # the same layers as a stated head (dropout and augmentation have no weights), and the arithmetic of the rest
    assert counts["4.1.1.1"] == counts["4.1.1.2"] and counts["4.1.1.4"] == counts["4.1.1.3"]
    assert counts["4.2.1.1"] == 2048 * 256 + 256 + 256 * 4 + 4
    assert counts["4.2.1.2"] == counts["4.2.1.3"] == counts["4.2.4.1"] == 2048 * 64 + 64 + 64 * 4 + 4
    assert counts["4.3.1.2"] == 1024 * 64 + 64 + 64 * 4 + 4
    pooled = backbones.head("vgg16", (2, 2, 512))
    assert pooled.input.shape[1:] == (None, None, 512)  # a pooled head takes pooled (1 x 1) features too
    assert pooled(np.ones((1, 1, 1, 512), "float32")).shape == (1, 4)
    flat = backbones.head("chexnet", (2, 2, 1024), backbones.spec("chexnet").heads[0])
    assert flat.input.shape[1:] == (2, 2, 1024) and count_params(flat)["total"] == 4096 * 64 + 64 + 260


def test_resnet152s_deeper_points_count_weighted_layers_as_the_report():
    base = backbones.backbone("resnet152", 32)
    weighted = [layer.name for layer in base.layers if layer.weights]
    # 4.2.3.3 "last 50 layers (conv4_block32_1_conv)", 4.2.3.4 "last 150 layers"; 4.2.3.2 "last 2 layers"
    assert backbones.spec("resnet152").unfreeze == ("conv5_block3_3_conv", "conv5_block3_1_conv",
                                                    "conv4_block32_1_conv", "conv4_block15_2_conv")
    assert [len(weighted) - weighted.index(point) for point in backbones.spec("resnet152").unfreeze] == [2, 6, 50, 150]


def test_missing_imagenet_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    weights, used = weight_files.imagenet_weights("vgg16")
    assert weights is None and not used.pretrained
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in used.long and str(tmp_path / "models") in used.long
    with pytest.raises(weight_files.WeightsUnavailable, match="ALLOW_RANDOM_WEIGHTS"):
        weight_files.pretrained_backbone("vgg16", 32, allow_random=False)
    model, used = weight_files.pretrained_backbone("vgg16", 32, allow_random=True)
    assert not used.pretrained and "no pretrained weights" in used.short


def test_cached_imagenet_file_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = weight_files.keras_cache_file("vgg16")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"placeholder")
    assert weight_files.imagenet_weights("vgg16") == (str(target), weight_files.Weights(
        True, "ImageNet (Keras's cache)", f"ImageNet ({target})"))


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
    model, used = weight_files.pretrained_backbone("chexnet", 64, allow_random=False, chexnet_file=path)
    assert used.pretrained and used.short == "CheXNet (chexnet_weights.h5; 241 of 241 weighted layers loaded by name)"
    for name in ("conv1_conv", "conv5_block16_2_conv", "bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_missing_chexnet_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        weight_files.pretrained_backbone("chexnet", 32, allow_random=True, chexnet_file=tmp_path / "missing.h5")


def test_preprocessing_modes_match_keras_applications():
    image = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 1)).repeat(3, axis=-1).astype("float32")
    caffe = keras.Sequential(backbones.preprocessing("caffe"))(image)
    np.testing.assert_allclose(caffe, keras.applications.vgg16.preprocess_input(image.copy()), atol=1e-4)
    torch = keras.Sequential(backbones.preprocessing("torch"))(image)
    np.testing.assert_allclose(torch, keras.applications.densenet.preprocess_input(image.copy()), atol=1e-4)


# --- CheXNet files written by Keras 2 (issue 9) ---

def keras2_name(name: str) -> str:
    """Keras 2's DenseNet121 spelled its stem with slashes: conv1/conv, conv1/bn, conv1/relu."""
    return name.replace("conv1_", "conv1/") if name.startswith("conv1_") else name


def write_keras2_file(path, base, skip=(), rename=keras2_name, whole_model=False, seed=0):
    """A CheXNet-Keras-style HDF5 file built with h5py: Keras 2 names, random weights, a 14-unit top.

    Returns {Keras 3 layer name: arrays written}.
    """
    rng = np.random.default_rng(seed)
    written, names = {}, []
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if whole_model else f
        layers = [(layer.name, [tuple(w.shape) for w in layer.weights], [w.name for w in layer.weights])
                  for layer in base.layers]
        features = base.output.shape[-1]
        layers.append(("predictions", [(features, 14), (14,)], ["kernel", "bias"]))
        for i, (name, shapes, weight_names) in enumerate(layers):
            if name in skip:
                continue
            stored = f"layer_{i}" if whole_model and name != "predictions" else rename(name)
            names.append(stored)
            group = root.create_group(stored)
            arrays = [rng.normal(size=shape).astype("float32") for shape in shapes]
            full = [f"{stored}/{w}:0" for w in weight_names]
            for weight, array in zip(full, arrays):
                group.create_dataset(weight, data=array)
            group.attrs["weight_names"] = [w.encode() for w in full]
            written[name] = arrays
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.1.5"
    return written


@pytest.fixture(scope="module")
def small_densenet():
    return backbones.backbone("chexnet", 32)


def test_keras2_chexnet_file_fills_every_weighted_layer(tmp_path, small_densenet):
    path = tmp_path / "brucechou1983_CheXNet_Keras_0.3.0_weights.h5"
    written = write_keras2_file(path, small_densenet)
    with h5py.File(path, "r") as f:
        assert "conv1/conv" in f and "conv1/bn" in f and "conv2_block1_0_bn" in f and "predictions" in f
    load = weight_files.load_chexnet_weights(small_densenet, path)
    weighted = [layer for layer in small_densenet.layers if layer.weights]
    assert (load.loaded, load.total, load.method) == (len(weighted), len(weighted), "name")
    assert len(weighted) == 241  # 120 convolutions and 121 batch normalisations
    for layer in weighted:
        for ours, theirs in zip(layer.get_weights(), written[layer.name]):
            np.testing.assert_array_equal(ours, theirs, err_msg=layer.name)


def test_chexnet_file_missing_a_layer_fails_naming_it_unless_partial_is_allowed(tmp_path, small_densenet):
    path = tmp_path / "partial.h5"
    write_keras2_file(path, small_densenet, skip=("conv3_block2_1_conv",))
    with pytest.raises(weight_files.WeightsMismatch,
                       match=r"no weights for 1 of the 241 weighted layers .*: conv3_block2_1_conv;"):
        weight_files.load_chexnet_weights(small_densenet, path)
    load = weight_files.load_chexnet_weights(small_densenet, path, allow_partial=True)
    assert (load.loaded, load.total, load.missing) == (240, 241, ("conv3_block2_1_conv",))
    assert "240 of 241 weighted layers loaded by name" in load.text()


def test_stem_left_under_keras2_names_is_not_silently_random(tmp_path, small_densenet):
    path = tmp_path / "unmapped.h5"
    other_spelling = lambda n: n.replace("conv1_", "conv1:") if n.startswith("conv1_") else n  # noqa: E731
    write_keras2_file(path, small_densenet, rename=other_spelling, skip=("conv5_block16_2_conv",))
    with pytest.raises(weight_files.WeightsMismatch, match=r"3 of the 241 .*conv1_conv, conv1_bn, conv5_block16_2_conv"):
        weight_files.load_chexnet_weights(small_densenet, path)


def test_whole_model_of_the_same_architecture_loads_in_topological_order(tmp_path, small_densenet):
    path = tmp_path / "whole_model.h5"
    written = write_keras2_file(path, small_densenet, whole_model=True, seed=3)
    load = weight_files.load_chexnet_weights(small_densenet, path)
    assert (load.loaded, load.total, load.method) == (241, 241, "order")
    for name in ("conv1_conv", "conv4_block24_2_conv", "bn"):
        for ours, theirs in zip(small_densenet.get_layer(name).get_weights(), written[name]):
            np.testing.assert_array_equal(ours, theirs)


def test_a_different_architecture_fails_naming_the_layer_and_shapes(tmp_path, small_densenet):
    path = tmp_path / "other.h5"
    write_keras2_file(path, small_densenet)
    with h5py.File(path, "r+") as f:
        del f["bn"]["bn/gamma:0"]
        f["bn"].create_dataset("bn/gamma:0", data=np.ones(7, "float32"))
    with pytest.raises(weight_files.WeightsMismatch, match=r"layer bn expects weights of shapes \[\(1024,\)"):
        weight_files.load_chexnet_weights(small_densenet, path)
