"""Data layer: metadata checks, sources, splits, caps and image cache (tf.data: tests/test_pipeline.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES, REPORT_COUNTS
from cxrlib.machinery.inputs import DataError, load_data, read_metadata, read_source
from cxrlib.machinery.inputs.images import load_images
from cxrlib.machinery.inputs.sources import read_labels, resolve_source
from cxrlib.science.data.splits import apply_caps, assert_patient_disjoint, split_patients
from cxrlib.machinery.synthetic import make_synthetic, render
from PIL import Image

from tests.conftest import make_rows, write_folder
from tests.test_hostile_inputs import decodes, file_key  # noqa: F401  (decodes: the fixture counting every decode)


def test_single_label_keeps_exact_matches_only(nih_folder):
    table, _ = read_labels(nih_folder / "Data_Entry_2017.csv")
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


def test_missing_images_are_counted_and_named(nih_folder, monkeypatch):
    for path in sorted((nih_folder / "images").glob("*.png"))[:3]:
        path.unlink()
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(nih_folder))
    with pytest.raises(DataError, match=r"3 image\(s\) listed .* missing"):
        read_source()  # the sample must be whole


def test_partial_nih_download_warns_and_keeps_what_is_there(nih_folder):
    removed = sorted((nih_folder / "images").glob("*.png"))[0]
    removed.unlink()
    with pytest.warns(UserWarning, match="1 of .* not on disk"):
        source = read_source(nih_folder)
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
    assert len(read_source(root).table) == 16


def test_split_is_patient_disjoint_reproducible_and_covers_every_class(nih_folder):
    table = read_source(nih_folder).table
    first = split_patients(table, (0.5, 0.25, 0.25), seed=3)
    again = split_patients(table, (0.5, 0.25, 0.25), seed=3)
    assert_patient_disjoint(first)
    assert first["split"].tolist() == again["split"].tolist()
    assert (pd.crosstab(first["label"], first["split"]) > 0).all().all()


def test_patient_in_two_splits_is_refused():
    table = pd.DataFrame({"Patient ID": [1, 1, 2], "split": ["train", "test", "val"]})
    with pytest.raises(DataError, match="1 patient"):
        assert_patient_disjoint(table)


def test_real_sample_split_is_patient_disjoint(sample_dir, isolated, monkeypatch):
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(sample_dir))
    data = load_data()
    labels = pd.read_csv(sample_dir / "labels.csv")
    assert data.source.kind == "sample" and len(data.source.table) == labels["Finding Labels"].isin(CLASSES).sum()
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


def test_source_order_explicit_then_sample_and_synthetic_only_when_asked(nih_folder, isolated, monkeypatch):
    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    assert resolve_source(nih_folder).kind == "nih"
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(nih_folder))
    assert resolve_source().kind == "sample"
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(isolated / "absent"))
    with pytest.raises(DataError) as missing:  # a missing sample is an error, never a silent fallback
        resolve_source()
    message = str(missing.value)
    assert "\n" not in message and f"expected it at {isolated / 'absent'}" in message and "DATA=synthetic" in message
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):
        source = read_source("synthetic")
    assert source.synthetic and set(source.table["Finding Labels"]) == set(CLASSES)
    monkeypatch.setenv("CXR_DATA_DIR", "synthetic")
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):
        assert resolve_source().kind == "synthetic"


def test_synthetic_images_are_deterministic_and_differ_by_class(tmp_path):
    first, second = make_synthetic(tmp_path / "a", per_class=2), make_synthetic(tmp_path / "b", per_class=2)
    a = sorted((first / "images").glob("*.png"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in sorted((second / "images").glob("*.png"))]
    means = [render(k, np.random.default_rng(1)).astype(float) for k in range(4)]
    for k in range(1, 4):
        assert np.abs(means[k] - means[0]).mean() > 2.0, CLASSES[k]


def test_images_are_decoded_once_and_cached(nih_folder, isolated, decodes):
    paths = sorted((nih_folder / "images").glob("*.png"))
    first = load_images(paths, 24)
    assert first.shape == (len(paths), 24, 24) and first.dtype == np.uint8
    assert decodes == {file_key(p): 1 for p in paths}  # every file decoded, each exactly once
    np.testing.assert_array_equal(load_images(paths, 24), first)
    assert decodes == {file_key(p): 1 for p in paths}  # the second call is served from the cache: no decode
    paths[0].write_bytes(b"corrupt but same name")  # a changed file must not be served from the cache
    with pytest.raises(DataError):
        load_images(paths, 24)
    assert len(list((isolated / "cache" / "images").glob("*.npy"))) == 1



# --- every row accounted for, hostile rows named, bad images reported together (issue 9) ---

def one_row_of_each_kind(root):
    """Four kept rows plus one multi-label, other finding, unknown label, missing and unreadable row."""
    rows = [{"Image Index": f"0000000{i}_000.png", "Finding Labels": c, "Patient ID": i} for i, c in enumerate(CLASSES)]
    rows += [{"Image Index": "00000010_000.png", "Finding Labels": "Effusion|Infiltration", "Patient ID": 10},
             {"Image Index": "00000011_000.png", "Finding Labels": "Pneumonia", "Patient ID": 11},
             {"Image Index": "00000012_000.png", "Finding Labels": "Infiltrate", "Patient ID": 12},
             {"Image Index": "00000013_000.png", "Finding Labels": "Effusion", "Patient ID": 13},
             {"Image Index": "00000014_000.png", "Finding Labels": "Atelectasis", "Patient ID": 14}]
    write_folder(root, rows)
    (root / "images" / "00000013_000.png").unlink()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(root / "images" / "00000014_000.png")
    return root


def test_drop_summary_counts_one_row_of_each_kind(tmp_path, isolated):
    from dataclasses import replace

    from cxrlib.machinery.inputs.images import first_touch

    root = one_row_of_each_kind(tmp_path / "nih")
    with pytest.warns(UserWarning, match="1 of 6 labelled images are not on disk"):
        source = read_source(root)
    with pytest.warns(UserWarning, match="skipping 1 unusable"):  # images are checked once a split uses them
        table, drops, _ = first_touch(source.table.assign(split="train"), source.drops, source.root, "skip")
    source = replace(source, table=table, drops=drops)
    assert (drops.rows_read, drops.rows_kept) == (9, 4)
    assert drops.dropped == {"multi-label": ["00000010_000.png"], "other finding": ["00000011_000.png"],
                             "unknown label": ["00000012_000.png"], "missing image": ["00000013_000.png"],
                             "unreadable image": ["00000014_000.png"]}
    assert drops.table()["rows"].tolist() == [1, 1, 1, 1, 1, 4, 9]
    assert drops.line().startswith("Data_Entry_2017.csv: 9 rows read, 4 kept; dropped 1 multi-label (00000010_000.png)")
    assert "1 unknown label (00000012_000.png)" in drops.line()
    assert "1 unreadable image(s) skipped" in source.describe()
    assert sorted(source.table["Image Index"]) == [f"0000000{i}_000.png" for i in range(4)]


def test_unusable_images_are_all_named_in_one_error_unless_skipped(nih_folder, isolated):
    paths = sorted((nih_folder / "images").glob("*.png"))
    paths[0].write_bytes(b"not a png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(paths[5])
    with pytest.raises(DataError, match=rf"2 image\(s\) .*{paths[0].name} \(cannot decode.*{paths[5].name} "
                                        rf"\(constant image.*on_bad_image='skip'"):
        load_data(nih_folder, fractions=(0.5, 0.25, 0.25))
    with pytest.warns(UserWarning, match="skipping 2 unusable"):
        data = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), on_bad_image="skip")
    assert data.drops.dropped["unreadable image"] == [paths[0].name, paths[5].name]
    assert not data.table["Image Index"].isin([paths[0].name, paths[5].name]).any()


def test_hostile_row_names_the_label_file_and_row(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    rows = [{"Image Index": "a.png", "Finding Labels": "No Finding", "Patient ID": 1},
            {"Image Index": "../../../etc/passwd", "Finding Labels": "No Finding", "Patient ID": 2}]
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"label file {path}, row 2: image name '../../../etc/passwd' is not a plain"):
        read_metadata(path)
    rows[1] = {"Image Index": "b.png", "Finding Labels": "No Finding", "Patient ID": "x7"}
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 2: Patient ID 'x7' is not a whole number"):
        read_metadata(path)
    rows[1] = {"Image Index": "a.png", "Finding Labels": "Effusion", "Patient ID": 2}
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"image 'a.png' is listed in rows 1, 2"):
        read_metadata(path)


def test_data_may_name_the_label_file_itself(nih_folder, isolated, tmp_path):
    source = read_source(nih_folder / "Data_Entry_2017.csv")
    assert source.root == nih_folder.resolve() and len(source.table) == 48
    with pytest.raises(DataError, match=r"data folder .*absent does not exist; give the folder"):
        resolve_source(tmp_path / "absent")


# --- content identity (issue 7): a replaced image invalidates the fingerprint and the image cache ---

def noise_png(path, seed):
    """An uncompressed PNG, so every image of one size has the same byte size."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32)).astype(np.uint8)
    Image.fromarray(pixels).save(path, compress_level=0)
    return pixels


def test_replacing_an_image_with_a_same_sized_one_changes_identity_and_pixels(nih_folder, isolated):
    from cxrlib.machinery.identity import data_identity

    for i, path in enumerate(sorted((nih_folder / "images").glob("*.png"))):
        noise_png(path, i)
    before = load_data(nih_folder, fractions=(0.5, 0.25, 0.25))
    first = np.array(before.images("train", 32))
    target = before.source.paths(before.split("train")["Image Index"][:1])[0]
    size = target.stat().st_size
    replacement = noise_png(target, 999)
    assert target.stat().st_size == size
    after = load_data(nih_folder, fractions=(0.5, 0.25, 0.25))
    assert after.source.fingerprint() != before.source.fingerprint()
    assert data_identity(after, {}) != data_identity(before, {})
    second = after.images("train", 32)
    np.testing.assert_array_equal(second[0], replacement)
    np.testing.assert_array_equal(second[1:], first[1:])
    assert not np.array_equal(first[0], replacement)


def test_content_hashes_are_computed_once(nih_folder, isolated, monkeypatch):
    from cxrlib.machinery.inputs import images

    paths = sorted((nih_folder / "images").glob("*.png"))
    hashes = [sha for sha, *_ in images.file_records(paths)]
    monkeypatch.setattr(images, "inspect_file", lambda path: pytest.fail(f"{path} hashed twice"))
    assert [sha for sha, *_ in images.file_records(paths)] == hashes
    import hashlib
    assert hashes[0] == hashlib.sha256(paths[0].read_bytes()).hexdigest()


# --- data checks right after loading (issue 7) ---

def test_empty_split_is_refused_naming_class_split_and_count(nih_folder, isolated):
    with pytest.raises(DataError, match=r"No Finding has 0 in test.*at least 1 \(min_per_split\)"):
        load_data(nih_folder, fractions=(0.5, 0.5, 0.0))
    with pytest.raises(DataError, match=r"Effusion has [0-9] in val"):
        load_data(nih_folder, fractions=(0.5, 0.25, 0.25), min_per_split=10)


def test_single_class_split_is_refused():
    from cxrlib.science.data.splits import check_splits

    splits = ["train"] * 4 + ["test"] * 4 + ["val"] * 4
    complete = pd.DataFrame({"label": [0, 1, 2, 3] * 3, "split": splits})
    check_splits(complete, 1)
    only_effusion = complete.assign(label=[0, 1, 2, 3] * 2 + [1] * 4)
    with pytest.raises(DataError, match=r"No Finding has 0 in val, Infiltration has 0 in val, "
                                        r"Atelectasis has 0 in val;"):
        check_splits(only_effusion, 1)
    with pytest.raises(DataError, match=r"No Finding has 1 in train.*Atelectasis has 1 in val"):
        check_splits(complete, 2)


# --- harmonised resolution (issue 9): resolution cannot act as a label ---

def roundtrip_error(images, native):
    """Mean change when an image goes down to `native` px and back: ~0 for images with no finer detail."""
    out = []
    for image in images:
        small = Image.fromarray(np.asarray(image)).resize((native, native), Image.LANCZOS)
        back = np.asarray(small.resize(image.shape[::-1], Image.BILINEAR)).astype(float)
        out.append(np.abs(back - image).mean())
    return np.array(out)


@pytest.mark.parametrize("harmonise", [False, True])
def test_harmonised_resolution_is_the_same_for_every_class(tmp_path, isolated, harmonise):
    from cxrlib.present.dataset import native_resolution, pipeline_resolution

    root = write_folder(tmp_path / "nih", make_rows(per_class=12))
    table = pd.read_csv(root / "Data_Entry_2017.csv")
    rng = np.random.default_rng(0)
    for name, label in zip(table["Image Index"], table["Finding Labels"]):
        scene = Image.fromarray(rng.integers(0, 256, (64, 64)).astype(np.uint8))
        # the sample's leak, exaggerated: Effusion exists only as a 16 px copy, the others at 64 px
        (scene.resize((16, 16), Image.LANCZOS) if label == "Effusion" else scene).save(root / "images" / name)
    data = load_data(root, fractions=(0.5, 0.25, 0.25), harmonise_resolution=harmonise)
    assert data.harmonise_to == (16 if harmonise else None)
    native = native_resolution(data)["images"]
    assert native.loc[16, "Effusion"] == 12 and native.loc[64, "No Finding"] == 12
    errors = pd.Series(roundtrip_error(data.images("train", 64), 16), index=data.split("train")["Finding Labels"])
    by_class = errors.groupby(level=0).mean()
    spread = by_class.max() - by_class.min()
    if harmonise:
        assert spread < 1.0, by_class
        assert "brought down to 16 px" in pipeline_resolution(data)
    else:
        assert spread > 10, by_class  # without it, sharpness alone tells Effusion apart
        assert "kept as they are" in pipeline_resolution(data)


def test_limit_per_patient_keeps_at_most_cap_images_of_each_patient_seeded():
    from cxrlib.science.data.splits import limit_per_patient

    table = pd.DataFrame({"Patient ID": [1] * 10 + [2] * 3 + [3], "label": [1] * 10 + [0] * 3 + [2]})
    kept = limit_per_patient(table, 2, seed=0)
    assert kept.groupby("Patient ID").size().to_dict() == {1: 2, 2: 2, 3: 1}
    assert kept.index.equals(limit_per_patient(table, 2, seed=0).index)  # seeded
    assert limit_per_patient(table, None) is table


def test_one_patient_over_the_stated_share_of_a_class_is_named():
    from cxrlib.present.labels import patient_share_sentence
    from cxrlib.science.data.splits import patient_shares, patients_over_share

    table = pd.DataFrame({"Patient ID": [116] * 3 + [1, 2, 3, 4], "label": [1] * 7,
                          "split": ["test"] * 7})
    assert patient_shares(table).iloc[0]["largest share of one patient"] == pytest.approx(3 / 7)
    assert patients_over_share(table, None).empty and patients_over_share(table, 0.5).empty
    assert patients_over_share(table.iloc[3:4], 0.25).empty  # one image of a class: one patient, allowed
    assert patients_over_share(table, 0.25)["that patient"].tolist() == [116]
    text = patient_share_sentence(table, 0.25)
    assert "43% (patient 116, 3 of the 7 Effusion images of test)" in text and "**Above the stated 25%**" in text
    assert patient_share_sentence(table, 0.5).endswith("within the stated 50%.")


def test_the_small_profiles_keep_every_patient_below_the_stated_share_of_the_shipped_sample():
    from cxrlib.core.manifest import profile_settings
    from cxrlib.machinery.inputs import load_for
    from cxrlib.science.data.splits import patient_shares

    for profile in ("smoke", "cpu"):
        settings = profile_settings(profile)
        shares = patient_shares(load_for(None, {**settings, "image_size": None}).table)
        assert (shares["largest share of one patient"] <= settings["max_patient_share"]).all(), profile
