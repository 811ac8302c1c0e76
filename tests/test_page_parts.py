"""Known answers of the parts a page is built from, each moved out of a notebook or the Chapter into present/: the
report's numbers beside ours, the tables a chapter shows in one call, and the summary box's pieces."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.frames import predictions_frame
from cxrlib.machinery.chapter import Chapter
from cxrlib.present import conclusions, dataset, page, report, tables
from cxrlib.present.ensemble import side_by_side
from cxrlib.core.backbones import Head
from cxrlib.science.stats import Bootstrap

Y = np.arange(80) % 4
BOOT = Bootstrap(Y, patients=np.arange(80) // 2, n=50, seed=0)


def test_counts_and_provenance_in_words():
    table = pd.DataFrame({"split": ["train", "train", "val", "test"], "Patient ID": [1, 1, 2, 3]})
    assert page.counts_text(table) == "4 images of 3 patients (train 2 from 1, val 1 from 1, test 1 from 1)"
    assert page.provenance_text("cpu", "d", "c", "none", "v", "l", "id", "CPU", "abc") == (
        "**Provenance.** Profile `cpu` · data: d, used c · parameters: none · v · l · identity `id` · device: CPU · "
        "commit `abc`")


def test_the_synthetic_banner_opens_the_boxes_list_only_for_synthetic_data():
    assert page.with_banner("<div><ul><li>x</li></ul></div>", False) == "<div><ul><li>x</li></ul></div>"
    shown = page.with_banner("<div><ul><li>x</li></ul></div>", True)
    assert shown.startswith("<div>" + page.synthetic_banner() + "<ul>") and "SYNTHETIC DATA" in shown


def test_report_comparisons_end_with_the_reports_training_size():
    assert page.report_training_note() == "The report trained on about 11,000 full-resolution images."
    assert page.against_report_text(BOOT, {"ours": np.eye(4)[Y]}, {"ours": None}) == ""
    text = page.against_report_text(BOOT, {"ours": np.eye(4)[Y]}, {"ours": "Fused"})
    assert text.startswith("**ours** against the report's Fused") and text.endswith(page.report_training_note())


def test_the_reports_final_table_and_parameter_counts():
    assert list(report.final_table().index) == list(report.FINAL_ROWS)
    headline = report.final_table(report.FINAL_HEADLINE)
    assert list(headline.columns) == ["Accuracy", "ROC AUC", "F1-macro", "FNFR"]
    assert headline.loc["Weighted average voting", "F1-macro"] == report.BEST["F1-macro"] == 0.7275
    table = report.parameters_table("from scratch", {"ours": {"first model": 1, "second model": 2}})
    assert table.to_dict() == {"report": {"first model": 4_741_188, "second model": 2_859_588},
                               "ours": {"first model": 1, "second model": 2}}


def test_the_tuned_head_is_typed_alike_for_the_report_and_ours():
    table = report.tuned_head_table({"layers": 2.0, "dropout": 0.5, "units": 64.0, "learning_rate": 0.001})
    assert table.loc["report"].to_dict() == {"layers": 1, "dropout": 0.23847, "units": 2560, "learning_rate": 1e-4}
    assert table["layers"].dtype.kind == table["units"].dtype.kind == "i"


def test_error_tables_set_the_reports_counts_beside_ours():
    totals = pd.DataFrame({"images": [3, 5, 20]}, index=[*report.ERROR_SUMMARY, "images"])
    assert error_report(totals) == {"misclassified by all the models": 176,
                                    "correctly classified by all the models": 501, "images": 1438}
    only = pd.DataFrame({"misclassified only by this model": [1]}, index=["VGG16 (ours)"])
    joined = report.error_only_table(only, {"VGG16": "VGG16 (ours)"}, pd.Series({"VGG16 (ours)": "all 4"}, name="p"))
    assert joined.loc["VGG16 (ours)"].tolist() == [1, 43, 60, "all 4"]


def error_report(totals) -> dict:
    """The report column error_totals adds."""
    return report.error_totals(totals)["report"].to_dict()


def test_answers_of_one_step_and_the_head_validation_chooses():
    findings = pd.DataFrame({"step": ["head flow", "more data"], "report's answer": ["yes", "no"],
                             "our answer": ["no", "no"], "other": [1, 2]}, index=["q1", "q2"])
    assert report.step_answers(findings, "more data").to_dict("index") == {"q2": {"report's answer": "no",
                                                                                 "our answer": "no"}}
    kept, other = Head("4.1.1.3", "gap", ((256, 0.5),)), Head("4.1.1.2", "flatten", ((256, 0.5),))
    run = SimpleNamespace(label="VGG16", chosen="b", heads={"b": SimpleNamespace(head=other)},
                          scores={"4.1.1.3": 0.4, "4.1.1.2": 0.5})
    assert report.head_choice(run, kept) == (
        "**VGG16.** The report kept 4.1.1.3 GAP + Dense 256 + Dropout 0.5, the head fine-tuned here; validation "
        "would choose 4.1.1.2 Dense 256 + Dropout 0.5 instead (macro F1 0.500, against 0.400).")
    assert report.ga_weights_table().loc["CheXNet1"].iloc[0] == report.GA_WEIGHTS["CheXNet1"]


def test_named_column_group_of_a_choice():
    assert tables.CHOICE_COLUMNS == ["chosen", "validation macro F1"]


def test_conclusions_choose_and_rank_on_validation():
    found = SimpleNamespace(val_scores=pd.Series({"a": 0.2, "b": 0.6, "c": 0.6}), families={"a": 1, "b": 1, "c": 2},
                            test={"a": 1, "b": 2, "c": 3})
    assert conclusions.best_model(found) == "b"
    assert list(conclusions.ranked(found).items()) == [("b", 2), ("c", 3), ("a", 1)]


def test_the_ensemble_question_quotes_the_reports_numbers():
    probs = {"ens": np.eye(4)[Y], "member": np.eye(4)[(Y + 1) % 4]}
    text = conclusions.ensemble_question(BOOT, probs, {"ens": 0.9, "member": 0.1}, ["ens"], ["member"])
    assert text.endswith("The report: yes (0.7275 against CheXNet2's 0.7181, no interval given).")


def test_found_sizes_count_per_class_or_say_none_are_recorded(capsys):
    data = SimpleNamespace(table=pd.DataFrame({"orig_width": [1024, 1024, 512],
                                               "Finding Labels": ["Effusion", "No Finding", "Effusion"]}))
    found = dataset.found_sizes(data, ["No Finding", "Effusion", "Infiltration"])
    assert found.to_dict("index") == {512: {"No Finding": 0, "Effusion": 1, "Infiltration": 0},
                                      1024: {"No Finding": 1, "Effusion": 1, "Infiltration": 0}}
    assert list(dataset.found_sizes(SimpleNamespace(table=pd.DataFrame({"x": [1]})), []).columns) == ["note"]
    shown = dataset.nih_overview(SimpleNamespace(table=pd.DataFrame({"Finding Labels": ["Effusion"]})))
    assert capsys.readouterr().out.strip() == dataset.NO_NIH_FILE and shown.loc["total", "used here"] == 1


def test_members_and_ensembles_side_by_side():
    frame = predictions_frame(range(4), [0, 1, 2, 3], np.eye(4), np.eye(4) * 2)
    done = SimpleNamespace(names={"average": "ensemble/average"}, frames={"ensemble/average": {"test": frame}},
                           fitted=SimpleNamespace(val_log_probs={"ensemble/average": "val z"}),
                           val_scores=lambda: pd.Series({"average": 0.5}))
    both = side_by_side(pd.DataFrame({"validation macro F1": ["0.25"]}, index=["VGG16"]), {"VGG16": frame},
                        {"VGG16": frame}, done)
    assert both.scores.to_dict() == {"VGG16": 0.25, "average": 0.5}
    assert list(both.probs) == list(both.test_logits) == list(both.val_logits) == ["VGG16", "average"]
    assert both.val_logits["average"] == "val z" and (both.test_logits["VGG16"] == np.eye(4) * 2).all()


def test_a_chapter_shows_the_manifests_models_by_default():
    trained = SimpleNamespace(name="second_cnn_otsu")
    chapter = SimpleNamespace(name="preprocessing", trained={"second_cnn_otsu": trained})
    assert Chapter.manifest_models(chapter) == [trained, "scratch/second_cnn", "fused_grid/no_da_no_rs_prep",
                                                "fused_grid/no_da_no_rs_4096"]
    with pytest.raises(KeyError, match="second_cnn_otsu"):
        Chapter.manifest_models(SimpleNamespace(name="preprocessing", trained={}))


def test_our_resizer_has_the_reports_parameter_count():
    from cxrlib.present.parameters import resizer_parameters

    assert resizer_parameters().to_dict() == {"report": {"parameters": 12_163}, "ours": {"parameters": 12_163}}
