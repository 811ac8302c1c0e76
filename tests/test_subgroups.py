"""Whom the models miss: known answers on synthetic tables for the FNFR and recall by group, the patient
bootstrap, the too-few rule and the gaps."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import CLASSES, NO_FINDING
from cxrlib.present import subgroups as subgroup_page
from cxrlib.present.labels import ensemble_name
from cxrlib.science import subgroups
from cxrlib.science.metrics import false_no_finding_rate

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
    people = subgroups.demographics(rows)
    rates, gaps = subgroups.model_tables(people, {"m": missing_women(rows)}, n=200, seed=1)
    fnfr = fnfr_rows(rates, "sex")
    assert fnfr.loc["female", "estimate"] == 1.0 and fnfr.loc["male", "estimate"] == 0.0
    assert fnfr.loc["female", "images"] == 30 and fnfr.loc["female", "reading"] == ""
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
    rates, _ = subgroups.model_tables(subgroups.demographics(rows), {"m": frame}, n=50)
    fnfr = fnfr_rows(rates, "sex")
    for sex, group in subgroups.SEXES.items():
        mine = (rows["Patient Gender"] == sex).to_numpy()
        assert fnfr.loc[group, "estimate"] == pytest.approx(false_no_finding_rate(rows["label"][mine], pred[mine]))
        assert fnfr.loc[group, "low"] <= fnfr.loc[group, "estimate"] <= fnfr.loc[group, "high"]


def test_a_group_with_too_few_diseased_images_is_shown_marked_and_kept_out_of_the_gaps():
    rows = table(women=19, men=30)
    rates, gaps = subgroups.model_tables(subgroups.demographics(rows), {"m": missing_women(rows)}, n=50)
    fnfr = fnfr_rows(rates, "sex")
    assert fnfr.loc["female", "reading"] == subgroups.TOO_FEW and fnfr.loc["female", "estimate"] == 1.0
    assert fnfr.loc["male", "reading"] == ""
    assert gaps[(gaps["attribute"] == "sex") & (gaps["metric"] == subgroups.FNFR)].empty
    assert "female (n=19, too few to read)" == subgroup_page.group_label(fnfr.reset_index().iloc[0])


def test_the_bootstrap_draws_whole_patients():
    patients = [7, 7, 7, 3, 3, 9]
    weights = subgroups.patient_weights(patients, n=500, seed=0)
    assert weights.shape == (500, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 3] == weights[:, 4]).all()
    assert (weights[:, [0, 3, 5]].sum(axis=1) == 3).all()  # three patients drawn in each resample
    assert (weights == subgroups.patient_weights(patients, n=500, seed=0)).all()


def test_age_groups_take_their_lower_edge_and_refuse_impossible_ages():
    groups = subgroups.age_group([0, 19.9, 20, 59, 60, 80, 95, 414, -1, None])
    assert groups[:7].tolist() == ["0–20", "0–20", "20–40", "40–60", "60–80", "80+", "80+"]
    assert groups[7:].isna().all()


def test_view_positions_and_missing_columns_from_the_label_file():
    rows = table(view="ap").drop(columns=["Patient Age"])
    metadata = pd.DataFrame({"Image Index": rows["Image Index"], "Patient Age": 85})
    people = subgroups.demographics(rows, metadata)
    assert set(people["view position"]) == {"AP"} and set(people["age group"]) == {"80+"}
    with pytest.raises(ValueError, match="lack the column.*Patient Age"):
        subgroups.demographics(rows)


def test_a_missing_prediction_is_named():
    rows = table()
    with pytest.raises(ValueError, match="no prediction for 1 test image"):
        subgroups.with_predictions(subgroups.demographics(rows), missing_women(rows).iloc[1:])


def test_a_gap_is_measured_from_the_largest_readable_group_where_the_attributes_own_is_too_small():
    assert subgroups.reference_group("sex", {"female": 30}) == "female"
    assert subgroups.reference_group("sex", {"female": 30, "male": 25}) == "male"
    assert subgroups.reference_group("age group", {"40–60": 25, "60–80": 40}) == "40–60"
    assert subgroups.reference_group("age group", {"20–40": 25, "60–80": 40}) == "60–80"
    assert subgroups.reference_group("age group", {}) is None


def test_the_models_read_are_the_one_chosen_on_validation_and_the_best_ensemble():
    choice = pd.DataFrame({"chosen": ["fused/fused", "pretrained/vgg16_features"],
                           "validation macro F1": [0.41, 0.52]}, index=["Fused", "VGG16"])
    assert subgroups.best_model(choice) == ("VGG16", "pretrained/vgg16_features")
    scores = pd.Series({"ensemble/average": 0.5, "ensemble/ga": math.nan, "fused/fused": 0.9})
    assert subgroups.best_ensemble(scores, ["ensemble/ga"]) == "ensemble/average"
    assert subgroups.best_ensemble(pd.Series(dtype=float), ["ensemble/ga"]) == "ensemble/ga"
    assert ensemble_name("ensemble/ga") == "Weighted average voting (GA)" and ensemble_name("average") == "Average voting"
    assert subgroups.best_ensemble(pd.Series(dtype=float), []) is None


def test_findings_and_figure():
    import matplotlib.pyplot as plt

    rows = table()
    rates, gaps = subgroups.model_tables(subgroups.demographics(rows), {"a": missing_women(rows),
                                                                       "b": missing_women(rows)}, n=50)
    text = subgroup_page.findings_text(rates, gaps, len(rows), rows["Patient ID"].nunique())
    assert "a: sex, female − male: +1.000" in text and "too few to read" in text
    fig = subgroup_page.plot_attribute(rates, gaps, [subgroups.FNFR], list(subgroups.ATTRIBUTES), "FNFR by group")
    assert len(fig.axes) == 6
    plt.close(fig)
