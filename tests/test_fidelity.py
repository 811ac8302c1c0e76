"""Fidelity to the report: fine tuning augments per backbone as the report did, with a switch."""
from __future__ import annotations

import keras
import pytest

from cxrlib.science.models import backbones


def test_fine_tuning_augments_as_the_report_per_backbone():
    assert backbones.fine_tune_augments("vgg16", "report") is True  # section 4.1.3 fine-tunes a model trained with DA
    assert backbones.fine_tune_augments("chexnet", "report") is False
    assert backbones.fine_tune_augments("chexnet", "always") is True
    assert backbones.fine_tune_augments("vgg16", "never") is False
    with pytest.raises(ValueError, match="fine_tune_augment='sometimes' is not allowed"):
        backbones.fine_tune_augments("vgg16", "sometimes")


def test_augmented_full_model_keeps_its_parameters():
    keras.utils.set_random_seed(0)
    base = backbones.backbone("vgg16", 32)
    top = backbones.head("vgg16", base.output.shape[1:])
    plain = backbones.full_model("vgg16", base, top, 32)
    augmented = backbones.full_model("vgg16", base, top, 32, augment=True)
    assert augmented.count_params() == plain.count_params()
    assert "augmentation" in [layer.name for layer in augmented.layers]
