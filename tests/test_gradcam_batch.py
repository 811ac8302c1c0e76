"""Grad-CAM in batches gives each image exactly the map it gets alone, nested backbones included."""
from __future__ import annotations

import numpy as np

from cxrlib.science import gradcam
from tests.test_gradcam import blob_images, blob_model


def test_a_batch_gives_each_image_its_own_map():
    model = blob_model()
    images, _, _ = blob_images(5, seed=3)
    classes = [None, 1, None, 0, 1]
    batched = gradcam.gradcam_cells_batch(model, list(images), classes)
    for image, k, (cells, explained) in zip(images, classes, batched):
        alone, alone_class = gradcam.gradcam_cells(model, image, k)
        assert explained == alone_class and (k is None or explained == k)
        np.testing.assert_allclose(cells, alone, atol=1e-5)


def test_prefetched_browser_maps_equal_maps_computed_one_by_one():
    models = {"a": blob_model(), "b": blob_model()}
    images, _, _ = blob_images(4, seed=5)
    by_id = {f"img{k}": image for k, image in enumerate(images)}

    def images_for(ids, size):
        return {i: by_id[i] for i in ids}

    pairs = [("a", "img0"), ("b", "img1"), ("all models", "img2"), ("all models", "img3")]
    from cxrlib.machinery.browse import heatmap_source

    fetched = heatmap_source(models, images_for, 24)
    fetched.prefetch(pairs)
    lazy = heatmap_source(models, images_for, 24)
    for pair in pairs:
        np.testing.assert_allclose(fetched(*pair), lazy(*pair), atol=1e-5)
