"""Cached backbone features are keyed by how the images were decoded and by the library code that made them."""
from __future__ import annotations

import numpy as np

from cxrlib.machinery import features, identity
from cxrlib.machinery.inputs import decode as images  # the decoder, whose version keys every cache


def test_feature_key_changes_with_the_decode_version(monkeypatch):
    before = features.feature_key("vgg16", 32, "imagenet")
    assert features.feature_key("vgg16", 32, "imagenet") == before  # stable otherwise
    monkeypatch.setattr(images, "DECODE_VERSION", images.DECODE_VERSION + 1)
    assert features.feature_key("vgg16", 32, "imagenet") != before


def test_feature_key_changes_with_the_library_code(monkeypatch):
    before = features.feature_key("vgg16", 32, "imagenet")
    monkeypatch.setattr(identity, "code_digest", lambda: "other code")
    assert features.feature_key("vgg16", 32, "imagenet") != before


def test_features_of_an_older_decode_are_computed_again(isolated, monkeypatch):
    calls = []

    def extractor(batch):
        calls.append(len(batch))
        return batch.mean(axis=(1, 2))

    pictures = np.random.default_rng(0).integers(0, 255, (3, 4, 4), dtype=np.uint8)
    features.extract(extractor, pictures, features.feature_key("b", 4), batch_size=3)
    features.extract(extractor, pictures, features.feature_key("b", 4), batch_size=3)
    assert calls == [3]  # cached
    monkeypatch.setattr(images, "DECODE_VERSION", images.DECODE_VERSION + 1)
    features.extract(extractor, pictures, features.feature_key("b", 4), batch_size=3)
    assert calls == [3, 3]  # the decode changed: not served from the old cache
