"""Data layer: metadata checks, sources, splits, caps, image cache and tf.data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.config import CLASSES, REPORT_COUNTS
from cxrlib.data import (DataError, assert_patient_disjoint, load_data, make_dataset, read_metadata,
                         single_label, split_patients)
from cxrlib.data.images import load_images
from cxrlib.data.sources import open_folder, resolve_source
from cxrlib.data.splits import apply_caps
from cxrlib.data.synthetic import make_synthetic, render
from tests.conftest import make_rows, write_folder


def test_single_label_keeps_exact_matches_only(nih_folder):
    table = single_label(read_metadata(nih_folder / "Data_Entry_2017.csv"))
    assert set(table["Finding Labels"]) == set(CLASSES)
    assert len(table) == 4 * 12
    assert (table["label"] == table["Finding Labels"].map(CLASSES.index)).all()


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    pd.DataFrame({"Image Index": ["a.png"], "Labels": ["No Finding"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="Finding Labels, Patient ID"):
        read_metadata(path)


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "sub/dir.png", "..", "a\\..\\b.png"])
def test_image_names_that_leave_the_folder_are_rejected(tmp_path, name):
    path = tmp_path / "Data_Entry_2017.csv"
    pd.DataFrame({"Image Index": [name], "Finding Labels": ["No Finding"], "Patient ID": [1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="not a plain file name"):
        read_metadata(path)


def test_missing_images_are_counted_and_named(nih_folder):
    for path in sorted((nih_folder / "images").glob("*.png"))[:3]:
        path.unlink()
    with pytest.raises(DataError, match=r"3 image\(s\) listed .* missing"):
        open_folder(nih_folder, "sample")


def test_partial_nih_download_warns_and_keeps_what_is_there(nih_folder):
    removed = sorted((nih_folder / "images").glob("*.png"))[0]
    removed.unlink()
    with pytest.warns(UserWarning, match="1 of .* not on disk"):
        source = open_folder(nih_folder, "nih")
    assert removed.name not in set(source.table["Image Index"])


def test_undecodable_image_is_named(nih_folder, isolated):
    broken = sorted((nih_folder / "images").glob("*.png"))[0]
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match=broken.name):
        load_images(sorted((nih_folder / "images").glob("*.png")), 16)


def test_nih_layout_with_numbered_image_folders(tmp_path):
    root = write_folder(tmp_path / "nih", make_rows(per_class=4))
    target = root / "images_001" / "images"
    target.mkdir(parents=True)
    for path in (root / "images").glob("*.png"):
        path.rename(target / path.name)
    (root / "images").rmdir()
    assert len(open_folder(root, "nih").table) == 16


def test_split_is_patient_disjoint_reproducible_and_covers_every_class(nih_folder):
    table = open_folder(nih_folder, "nih").table
    first = split_patients(table, (0.5, 0.25, 0.25), seed=3)
    again = split_patients(table, (0.5, 0.25, 0.25), seed=3)
    assert_patient_disjoint(first)
    assert first["split"].tolist() == again["split"].tolist()
    assert (pd.crosstab(first["label"], first["split"]) > 0).all().all()


def test_patient_in_two_splits_is_refused():
    table = pd.DataFrame({"Patient ID": [1, 1, 2], "split": ["train", "test", "val"]})
    with pytest.raises(DataError, match="1 patient"):
        assert_patient_disjoint(table)


def test_real_sample_split_is_patient_disjoint(sample_dir, monkeypatch):
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(sample_dir))
    data = load_data()
    assert data.source.kind == "sample" and len(data.source.table) == 422
    assert_patient_disjoint(data.table)
    patients = [set(data.split(s)["Patient ID"]) for s in ("train", "val", "test")]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])


def test_report_caps_rebuild_both_training_set_sizes():
    rng = np.random.default_rng(0)
    rows = [{"label": k, "split": s, "Patient ID": i} for i, (k, s) in enumerate(
        zip(rng.integers(0, 4, 60000), rng.choice(["train", "val", "test"], 60000, p=[.8, .1, .1])))]
    table = pd.DataFrame(rows)
    more = apply_caps(table, REPORT_COUNTS, training_set="more")
    first = apply_caps(table, REPORT_COUNTS, training_set="first")
    assert (more["split"] == "train").sum() == 11143
    assert abs((first["split"] == "train").sum() - 7996) <= 2
    assert (more["split"] == "test").sum() == sum(REPORT_COUNTS["test"].values())


def test_source_order_explicit_then_sample_then_synthetic(nih_folder, isolated, monkeypatch):
    assert resolve_source(nih_folder).kind == "nih"
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(nih_folder))
    assert resolve_source().kind == "sample"
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(isolated / "absent"))
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):
        source = resolve_source()
    assert source.synthetic and set(source.table["Finding Labels"]) == set(CLASSES)
    with pytest.raises(DataError, match="no data"):
        resolve_source(allow_synthetic=False)


def test_synthetic_images_are_deterministic_and_differ_by_class(tmp_path):
    first, second = make_synthetic(tmp_path / "a", per_class=2), make_synthetic(tmp_path / "b", per_class=2)
    a = sorted((first / "images").glob("*.png"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in sorted((second / "images").glob("*.png"))]
    means = [render(k, np.random.default_rng(1)).astype(float) for k in range(4)]
    for k in range(1, 4):
        assert np.abs(means[k] - means[0]).mean() > 2.0, CLASSES[k]


def test_images_are_decoded_once_and_cached(nih_folder, isolated):
    paths = sorted((nih_folder / "images").glob("*.png"))
    first = load_images(paths, 24)
    assert first.shape == (len(paths), 24, 24) and first.dtype == np.uint8
    paths[0].write_bytes(b"corrupt but same name")  # a changed file must not be served from the cache
    with pytest.raises(DataError):
        load_images(paths, 24)
    assert len(list((isolated / "cache" / "images").glob("*.npy"))) == 1


def test_pipeline_yields_rgb_float_batches():
    images = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    batches = list(make_dataset(images, np.arange(5), batch_size=2, shuffle=True))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    x, _ = batches[0]
    assert x.shape == (2, 8, 8, 3) and x.dtype.name == "float32"
    assert np.array_equal(x[..., 0], x[..., 2])


def test_large_arrays_stream_instead_of_copying(monkeypatch):
    from cxrlib.data import pipeline

    monkeypatch.setattr(pipeline, "IN_GRAPH_LIMIT", 10)
    images = np.ones((3, 4, 4), np.uint8)
    batches = list(pipeline.make_dataset(images, np.array([0, 1, 2]), batch_size=3))
    assert batches[0][0].shape == (3, 4, 4, 3)
