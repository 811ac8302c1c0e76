"""Architectures against the report's parameter counts."""
from __future__ import annotations

import pytest

from cxrlib.science.models import count_params, first_cnn, fused_net, learnable_resizer, second_cnn


def test_learnable_resizer_has_12163_parameters():
    assert count_params(learnable_resizer(227))["total"] == 12_163


def test_fused_net_matches_report_summary():
    model = fused_net(250, 227)
    assert count_params(model) == {"total": 9_211_847, "trainable": 9_211_719, "non_trainable": 128}
    shapes = [tuple(layer.output.shape[1:]) for layer in model.layers if "concatenate" in layer.name]
    assert shapes == [(6, 6, 608)]


@pytest.mark.parametrize("size,resize_to", [(96, 87), (128, 113)])
def test_fused_net_keeps_its_parameters_at_profile_sizes(size, resize_to):
    assert count_params(fused_net(size, resize_to))["total"] == 9_211_847


def test_fused_switches():
    assert count_params(fused_net(resizer=False))["total"] == 9_211_847 - 12_163
    wide = count_params(fused_net(dense_units=4096))["total"]
    assert wide == 9_211_847 - 1_247_232 - 4_196_352 - 8_196 + (608 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 4 + 4)
    assert count_params(fused_net(augment=True))["total"] == 9_211_847
    assert count_params(fused_net(fused=False))["total"] < 9_211_847


def test_second_cnn_has_2859588_parameters():
    assert count_params(second_cnn(resize_to=227))["total"] == 2_859_588


def test_first_cnn_has_4741188_parameters():
    assert count_params(first_cnn(resize_to=227))["total"] == 4_741_188


def test_models_take_uint8_grey_and_cast_on_the_device():
    import keras
    import numpy as np

    model = second_cnn(image_size=40, resize_to=36)
    assert model.input.shape[1:] == (40, 40, 1)
    grey = np.random.default_rng(0).integers(0, 256, (2, 40, 40), dtype=np.uint8)
    reference = np.asarray(model(grey[..., None], training=False))
    for same in (grey, grey.astype(np.float32)[..., None], np.repeat(grey[..., None], 3, -1).astype(np.float32)):
        assert np.allclose(np.asarray(model(same, training=False)), reference, atol=1e-6)
    three = keras.Model(model.input, model.get_layer("three_channels").output)(grey[..., None])
    assert three.dtype == "float32" and np.array_equal(np.asarray(three)[..., 2], grey.astype(np.float32))


def test_grey_input_model_survives_save_and_load(tmp_path):
    import keras
    import numpy as np

    model = fused_net(64, 57, resizer=False)
    grey = np.full((1, 64, 64, 1), 128, np.uint8)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(np.asarray(loaded(grey)), np.asarray(model(grey)), atol=1e-6)
