"""Whom the models miss: known answers on synthetic tables for the FNFR and recall by group, the too-few rule
(images and effective patients), the gaps and their calibration under no difference, the shortcut check, and the
models the chapter reads (chosen on validation)."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES, NO_FINDING
from cxrlib.machinery import runs
from cxrlib.machinery.subgroups import examined
from cxrlib.present import subgroups as subgroup_page
from cxrlib.science import subgroups
from cxrlib.science.subgroups import age_group, demographics, known_ages
from cxrlib.science.stats import patient_resamples

matplotlib.use("Agg")
DISEASES = [k for k in range(len(CLASSES)) if k != NO_FINDING]


def table(women: int = 30, men: int = 30, healthy: int = 10, age: int = 50, view: str = "PA") -> pd.DataFrame:
    """Label-file rows: per sex, `diseased` images (two per patient) and `healthy` No Finding images."""
    rows, patient = [], 0
    for sex, diseased in (("F", women), ("M", men)):
        for i in range(diseased + healthy):
            patient += i % 2 == 0
            rows.append({"Image Index": f"{patient:08d}_{i:03d}.png", "Patient ID": patient, "Patient Gender": sex,
                         "Patient Age": age, "View Position": view,
                         "label": DISEASES[i % len(DISEASES)] if i < diseased else NO_FINDING})
    return pd.DataFrame(rows)


def missing_women(rows: pd.DataFrame) -> pd.DataFrame:
    """A model's test predictions that call every woman's disease No Finding and get everything else right."""
    pred = np.where((rows["Patient Gender"] == "F") & (rows["label"] != NO_FINDING), NO_FINDING, rows["label"])
    return pd.DataFrame({"Image Index": rows["Image Index"], "label": rows["label"], "pred": pred})


def fnfr_rows(rates: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """The FNFR rows of one attribute, indexed by group."""
    return rates[(rates["attribute"] == attribute) & (rates["metric"] == subgroups.FNFR)].set_index("group")


def test_a_model_that_misses_only_womens_disease():
    rows = table()
    people = demographics(rows)
    rates, gaps = subgroups.model_tables(people, {"m": missing_women(rows)}, n=200, seed=1)
    fnfr = fnfr_rows(rates, "sex")
    assert fnfr.loc["female", "estimate"] == 1.0 and fnfr.loc["male", "estimate"] == 0.0
    assert fnfr.loc["female", "images"] == 30 and fnfr.loc["female", "readable"]
    gap = gaps[(gaps["attribute"] == "sex") & (gaps["metric"] == subgroups.FNFR)].iloc[0]
    assert gap["gap"] == "female − male" and gap["estimate"] == 1.0
    assert gap["low"] > 0 and gap["excludes 0"]
    recall = rates[(rates["attribute"] == "sex") & (rates["metric"] == "recall: No Finding")].set_index("group")
    assert recall["estimate"].tolist() == [1.0, 1.0]  # every healthy image is called healthy


def test_estimates_agree_with_the_report_metric_on_each_group():
    rng = np.random.default_rng(3)
    rows = table(women=40, men=44)
    pred = rng.integers(0, len(CLASSES), len(rows))
    frame = pd.DataFrame({"Image Index": rows["Image Index"], "label": rows["label"], "pred": pred})
    rates, _ = subgroups.model_tables(demographics(rows), {"m": frame}, n=50)
    fnfr = fnfr_rows(rates, "sex")
    for sex, group in subgroups.SEXES.items():
        mine = (rows["Patient Gender"] == sex).to_numpy()
        diseased = rows["label"][mine] != NO_FINDING
        assert fnfr.loc[group, "estimate"] == pytest.approx(np.mean(pred[mine][diseased] == NO_FINDING))
        assert fnfr.loc[group, "low"] <= fnfr.loc[group, "estimate"] <= fnfr.loc[group, "high"]


def test_a_group_with_too_few_diseased_images_is_shown_marked_and_kept_out_of_the_gaps():
    rows = table(women=19, men=30)
    rates, gaps = subgroups.model_tables(demographics(rows), {"m": missing_women(rows)}, n=50)
    fnfr = fnfr_rows(rates, "sex")
    assert not fnfr.loc["female", "readable"] and fnfr.loc["female", "estimate"] == 1.0
    assert fnfr.loc["male", "readable"]
    assert gaps[(gaps["attribute"] == "sex") & (gaps["metric"] == subgroups.FNFR)].empty
    assert "female (n=19, 10 pat., too few to read)" == subgroup_page.group_label(fnfr.reset_index().iloc[0])


def test_age_groups_take_their_lower_edge_and_refuse_impossible_ages():
    groups = age_group([0, 19.9, 20, 59, 60, 80, 95, 414, -1, None])
    assert groups[:7].tolist() == ["0–20", "0–20", "20–40", "40–60", "60–80", "80+", "80+"]
    assert groups[7:].isna().all()


def test_known_ages_are_numbers_within_0_and_the_oldest():
    assert known_ages(["7", 120, 121, -1, "n/a"]).tolist()[:2] == [7.0, 120.0]
    assert known_ages(["7", 120, 121, -1, "n/a"])[2:].isna().all()


def test_view_positions_and_missing_columns_from_the_label_file():
    rows = table(view="ap").drop(columns=["Patient Age"])
    metadata = pd.DataFrame({"Image Index": rows["Image Index"], "Patient Age": 85})
    people = demographics(rows, metadata)
    assert set(people["view position"]) == {"AP"} and set(people["age group"]) == {"80+"}
    with pytest.raises(ValueError, match="lack the column.*Patient Age"):
        demographics(rows)


def test_a_missing_prediction_is_named():
    rows = table()
    with pytest.raises(ValueError, match="no prediction for 1 test image"):
        subgroups.with_predictions(demographics(rows), missing_women(rows).iloc[1:])


def test_a_gap_is_measured_from_the_largest_readable_group_where_the_attributes_own_is_too_small():
    assert subgroups.reference_group("sex", {"female": 30}) == "female"
    assert subgroups.reference_group("sex", {"female": 30, "male": 25}) == "male"
    assert subgroups.reference_group("age group", {"40–60": 25, "60–80": 40}) == "40–60"
    assert subgroups.reference_group("age group", {"20–40": 25, "60–80": 40}) == "60–80"
    assert subgroups.reference_group("age group", {}) is None


def test_findings_and_figure():
    import matplotlib.pyplot as plt

    rows = table()
    rates, gaps = subgroups.model_tables(demographics(rows), {"a": missing_women(rows),
                                                                       "b": missing_women(rows)}, n=50)
    text = subgroup_page.findings_text(rates, gaps, len(rows), rows["Patient ID"].nunique())
    assert "a: sex, female − male: +1.000" in text and "too few to read" in text
    fig = subgroup_page.plot_attribute(rates, gaps, [subgroups.FNFR], list(subgroups.ATTRIBUTES), "FNFR by group")
    assert len(fig.axes) == 6
    plt.close(fig)


def test_effective_patients_count_one_patient_with_many_images_as_few():
    assert subgroups.effective_patients([1, 2, 3, 4]) == 4
    assert subgroups.effective_patients([7] * 15 + [1, 1, 2, 3, 4, 5]) == pytest.approx(21 ** 2 / (15 ** 2 + 4 + 4))
    assert subgroups.effective_patients([9, 9]) == 1 and subgroups.effective_patients([]) == 0


def shaped_like_the_cpu_test_split(others_a: int = 40, others_b: int = 30, healthy: int = 20) -> pd.DataFrame:
    """Two sexes; one woman supplies 15 diseased images and one healthy one (as one patient does in the cpu build's
    test split), every other patient one image: others_a women and others_b men with a finding, `healthy` of each
    without."""
    rows, patient = [], 0

    def add(sex: str, images: int, diseased: int) -> None:
        nonlocal patient
        patient += 1
        rows.extend({"Image Index": f"{patient:08d}_{i:03d}.png", "Patient ID": patient, "sex": sex,
                     "label": DISEASES[i % len(DISEASES)] if i < diseased else NO_FINDING} for i in range(images))
    add("female", 16, 15)
    for sex, diseased in (("female", others_a), ("male", others_b)):
        for i in range(diseased + healthy):
            add(sex, 1, int(i < diseased))
    return pd.DataFrame(rows)


def test_a_gap_resting_on_one_patients_images_is_never_read():
    # as in the cpu build: one patient's 15 diseased images and 5 other patients' make a group of 20 images
    people = shaped_like_the_cpu_test_split(others_a=5)
    missed = people.assign(pred=np.where(people["sex"] == "female", NO_FINDING, people["label"]))
    rates, gaps = subgroups.subgroup_tables(missed, n=200, attributes=["sex"], metrics=[subgroups.FNFR])
    female = rates.set_index("group").loc["female"]
    assert female["images"] == 20 and female["patients"] == 6 and female["effective patients"] < 2
    assert not female["readable"] and female["estimate"] == 1.0
    assert gaps.empty  # no star can rest on it, however large the gap


def test_with_no_true_difference_the_gap_misses_zero_about_one_time_in_twenty():
    """400 null runs on a split with one patient of 15 diseased images: each patient's chance of having their
    disease called No Finding is drawn around 0.3 (within-patient correlation 0.5), the same for both sexes."""
    people = shaped_like_the_cpu_test_split()
    rng, patients = np.random.default_rng(29), people["Patient ID"].to_numpy() - 1
    chance = rng.beta(0.3, 0.7, size=(400, patients.max() + 1))[:, patients]
    missed = rng.random(chance.shape) < chance
    starred = 0
    for seed, run in enumerate(missed):
        _, gaps = subgroups.subgroup_tables(people.assign(pred=np.where(run, NO_FINDING, people["label"])), n=1000,
                                            seed=seed, attributes=["sex"], metrics=[subgroups.FNFR])
        assert len(gaps) == 1  # both groups can be read: the woman with 15 images is one of 11 effective patients
        starred += int(gaps["excludes 0"].iloc[0])
    assert 0.03 <= starred / len(missed) <= 0.07


def test_each_interval_counts_the_resamples_in_which_its_group_was_empty():
    people = shaped_like_the_cpu_test_split(others_a=2, others_b=30)
    people = people.assign(pred=people["label"])
    rates, _ = subgroups.subgroup_tables(people, n=300, seed=4, attributes=["sex"], metrics=[subgroups.FNFR])
    weights = patient_resamples(people["Patient ID"], n=300, seed=4)
    women = (people["sex"] == "female") & (people["label"] != NO_FINDING)
    drawn_empty = int((weights[:, women.to_numpy()].sum(axis=1) == 0).sum())
    assert drawn_empty > 0 and rates.set_index("group").loc["female", "empty"] == drawn_empty
    assert rates.set_index("group").loc["male", "empty"] == 0
    table = subgroup_page.rates_table(rates.assign(model="m"))
    assert table.loc[("sex", "female"), "resamples empty"] == drawn_empty


def test_agreement_beyond_the_classes():
    rng = np.random.default_rng(5)
    labels = np.tile(np.arange(len(CLASSES)), 60)
    noisy = np.where(rng.random(len(labels)) < 0.5, labels, rng.integers(0, len(CLASSES), len(labels)))
    other = np.where(rng.random(len(labels)) < 0.5, labels, rng.integers(0, len(CLASSES), len(labels)))
    one = np.ones((1, len(labels)))
    observed, expected = subgroups.agreement(labels, labels, labels, one)
    assert observed[0] == expected[0] == 1  # both right everywhere: all explained by the classes
    observed, expected = subgroups.agreement(labels, noisy, noisy, one)
    assert observed[0] == 1 and expected[0] < 0.7  # a copy agrees beyond what the classes explain
    people = pd.DataFrame({"Image Index": [f"{i}.png" for i in range(len(labels))], "label": labels,
                           "Patient ID": np.arange(len(labels)) // 2})
    frame = lambda pred: people[["Image Index", "label"]].assign(pred=pred)  # noqa: E731
    table = subgroups.agreement_table(people, {"copy": frame(noisy), "independent": frame(other)}, frame(noisy),
                                      n=400, seed=1)
    assert table.loc["copy", "excess"].sign == 1 and table.loc["independent", "excess"].holds(0)
    words = subgroup_page.agreement_text(table, len(people), 120)
    assert words.startswith("Excess agreement above 0, by its interval: copy.") and "The others:" in words
    assert subgroups.agreement_table(people, {"copy": frame(noisy)}, None) is None
    assert subgroup_page.agreement_text(None, 1, 1) == subgroup_page.NO_BASELINE


def save(root, key: str, split: str, labels, preds) -> None:
    chapter, model = key.split("/")
    probs = np.eye(len(CLASSES))[preds] * 0.9 + 0.025
    runs.ChapterRun("smoke", chapter, root).save_predictions(model, split, runs.predictions_frame(
        [f"{i:08d}_000.png" for i in range(len(labels))], labels, probs))


def test_the_chapter_reads_the_models_chosen_on_validation_never_on_test(tmp_path):
    labels = np.tile(np.arange(len(CLASSES)), 5)
    wrong = (labels + 1) % len(CLASSES)
    half = np.where(np.arange(len(labels)) % 2 == 0, labels, wrong)
    for key, val, test in (("fused/fused", labels, wrong), ("scratch/second_cnn", half, labels),
                           ("ensemble/average", half, labels), ("ensemble/ga", labels, wrong),
                           ("baseline/labels_only", half, half)):
        save(tmp_path, key, "val", labels, val)
        save(tmp_path, key, "test", labels, test)
    rows = pd.DataFrame({"Image Index": [f"{i:08d}_000.png" for i in range(len(labels))], "label": labels,
                         "Patient ID": np.arange(len(labels)), "Patient Gender": "F", "Patient Age": 40,
                         "View Position": "PA"})
    ch = SimpleNamespace(profile="smoke", runs_root=tmp_path, weights={}, data=SimpleNamespace(split=lambda s: rows),
                         predictions=lambda keys=None, split="test": runs.load_predictions("smoke", split, tmp_path,
                                                                                          keys=keys))
    seen = examined(ch)
    assert seen.roles["saved as"].tolist() == ["fused/fused", "ensemble/ga"]  # the validation best, worst on test
    assert list(seen.test) == ["chosen model: Fused", "best ensemble: Weighted average voting (GA)"]
    assert set(seen.every) == {"Fused", "CNN from scratch", "Weighted average voting (GA)"}
    assert seen.baseline["pred"].tolist() == half.tolist() and len(seen.people) == len(labels)
