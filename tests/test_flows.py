"""The report's experiment flows (section 4): the numbers report.py copies, parsed again from the copy of report.md;
the heads as the report names them; the questions asked of each step; and the small pieces that answer them
(validation loss under resample weights, the flow table, features of augmented copies by epoch, the smaller
training set)."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from cxrlib.core.config import REPORT_COUNTS, REPORT_FIRST_TRAIN_SIZE
from cxrlib.present import report
from cxrlib.science import metrics, stats
from cxrlib.core.backbones import BACKBONES
from cxrlib.science.models import backbones
from tests.test_report_numbers import REPORT_MD, blocks

HEADING = re.compile(r"^#+\s*(4\.\d\.\d(?:\.\d)?)\s+(.*)$")
QUOTE = re.compile(r"(?<!\w)'(.+?)'(?!\w)")  # 'a quote', not the apostrophe of didn't


@pytest.fixture(scope="module")
def sections():
    """Section number of section 4 -> (its heading, its text up to the next heading)."""
    text = REPORT_MD.read_text()
    text = text[text.index("## 4 Pre-Trained Models"):text.index("## 5 Error Analysis")]
    found, current = {}, None
    for line in text.splitlines():
        match = HEADING.match(line)
        if match:
            current = match.group(1)
            found[current] = [match.group(2).replace("\\_", "_"), ""]
        elif current:
            found[current][1] += line + "\n"
    return found


def stated(body: str):
    """A section's best-epoch row (five numbers) and its trainable parameters, where it states them."""
    row = next((b[1] for b in blocks(body) if b[0][0] == "Best Epoch"), None)
    params = re.search(r"Trainable params: ([\d,]+)", body)
    return ([float(v) for v in row] if row else None), (int(params.group(1).replace(",", "")) if params else None)


def test_every_flow_row_of_report_py_is_the_reports(sections):
    for section, numbers in report.FLOWS.items():
        row, params = stated(sections[section][1])
        if row is None:
            assert all(math.isnan(v) for v in numbers[:5]), section  # a figure only: nothing copied
        else:
            assert list(numbers[:5]) == row, section
        if params is not None:
            assert numbers[5] == params, section
    # stated elsewhere: CheXNet's flattened Dense 64 in the text, its kept head in 4.3.2.1's summary
    assert "3.211.588 from the Dense layer on top" in sections["4.3.1.1"][1] and report.FLOWS["4.3.1.1"][5] == 3_211_588
    dense = [int(line.split("\t")[-1]) for line in sections["4.3.2.1"][1].splitlines() if line.startswith("dense")]
    assert dense == [65_600, 4_160, 260] and report.FLOWS["4.3.1.3"][5] == sum(dense)


def test_every_stated_row_of_section_4_is_in_report_py(sections):
    with_rows = {s for s, (_, body) in sections.items() if stated(body)[0] is not None}
    assert with_rows == {s for s, numbers in report.FLOWS.items() if not math.isnan(numbers[0])}
    assert len(with_rows) == 6  # VGG16's 4.1.1.2-3, CheXNet's four fine tunings


def test_each_head_is_the_one_its_section_names(sections):
    heads = [h for spec in BACKBONES.values() for h in spec.heads]
    assert [h.section for h in heads] == ["4.1.1.1", "4.1.1.2", "4.1.1.3", "4.1.1.4", "4.2.1.1", "4.2.1.2",
                                          "4.2.1.3", "4.2.4.1", "4.3.1.1", "4.3.1.2", "4.3.1.3"]
    for head in heads:  # the report's heading, its three spellings of global average pooling as "GAP"
        words = re.sub(r"Global (Average|Avg\.|AVG) Pooling 2D", "GAP", sections[head.section][0])
        words = re.sub(r"two Dense (\d+)", r"Dense \1 + Dense \1", words).removesuffix(" Layer")
        assert report.head_label(head) == f"{head.section} {words}"
    # the heads fine tuning starts from: 4.1.2.1 "from 5.1.1.4" (the report numbers its sections 5.x there)
    froms = {name: spec.kept for name, spec in BACKBONES.items()}
    assert froms == {"vgg16": "4.1.1.4", "resnet152": "4.2.1.2", "resnet50": "4.2.4.1", "chexnet": "4.3.1.3"}
    assert "from 5.1.1.4" in sections["4.1.2.1"][0] and "from 5.2.1.2" in sections["4.2.2.1"][0]
    assert "from 5.2.4.1" in sections["4.2.4.2"][0] and "from 5.3.1.3" in sections["4.3.2.1"][0]


def test_the_flow_questions_name_real_steps_and_quote_the_report():
    text = " ".join(REPORT_MD.read_text().split())
    for backbone, before, after, question, theirs in report.FLOW_QUESTIONS:
        sections = [h.section for h in backbones.spec(backbone).heads]
        assert sections.index(after) == sections.index(before) + 1, (before, after)  # one step of the flow
        assert "validation loss" in question
        for quote in QUOTE.findall(theirs):
            assert quote in text, quote
    assert sum(len(QUOTE.findall(q[4])) for q in report.FLOW_QUESTIONS) == 5
    assert "1.1699 to 1.0143" in report.FLOW_QUESTIONS[1][4]  # from FLOWS, not typed twice
    assert "0.8118 to 0.8153" in report.MORE_DATA["chexnet"] and "67.12% to 68.96%" in report.MORE_DATA["chexnet"]
    quotes = [quote for answer in report.MORE_DATA.values() for quote in QUOTE.findall(answer)]
    assert len(quotes) == 2 and all(quote in text for quote in quotes), quotes


# --- validation loss under resample weights ---

def test_loss_under_unit_weights_is_the_cross_entropy_and_weights_repeat_images():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=9)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # a wrong certain answer: clipped as Keras clips, not infinite
    y = np.array([1, 0, 2, 3, 1, 1, 0, 2, 3])
    loss = stats.weighted_metrics(y, probs, np.ones((1, 9)))["Loss"][0]
    assert loss == pytest.approx(metrics.cross_entropy(y, probs))
    weights = np.array([[2, 0, 1, 1, 1, 1, 1, 1, 1]])  # image 0 twice, image 1 not at all
    repeated = [0, 0, 2, 3, 4, 5, 6, 7, 8]
    assert stats.weighted_metrics(y, probs, weights)["Loss"][0] == pytest.approx(
        metrics.cross_entropy(y[repeated], probs[repeated]))


def test_a_loss_difference_is_paired_on_the_same_resamples():
    y, patients = [0, 1, 2, 3, 0, 1], [1, 1, 2, 2, 3, 3]
    good = np.eye(4)[y] * 0.7 + 0.075
    worse = np.full((6, 4), 0.25)
    boot = stats.Bootstrap(y, patients, n=200, seed=0)
    found = boot.difference(worse, good, "Loss")  # the loss of the worse minus the better: above 0 everywhere
    assert found.estimate == pytest.approx(math.log(4) + math.log(0.775))
    assert found.low == pytest.approx(found.estimate) and found.sign == 1  # the same gap on every image


# --- the flow table ---

HISTORY = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.3, 1.1, 0.9], "accuracy": [0.3, 0.4, 0.5],
                        "val_loss": [1.2, 1.0, 1.0], "val_accuracy": [0.35, 0.45, 0.55]})


class Fit:
    history, params = HISTORY, 1234


def test_log_row_is_the_first_epoch_of_lowest_validation_loss():
    assert report.log_row(HISTORY) == [2, 1.1, 40.0, 1.0, 45.0]  # epochs 2 and 3 tie: the first, as checkpoints


def test_flow_table_sets_ours_above_the_reports_row_in_the_reports_order():
    heads = backbones.spec("vgg16").heads
    table = report.flow_table(heads, {"4.1.1.3": Fit(), "4.1.1.1": Fit()})
    assert table.index.tolist() == [
        ("4.1.1.1 Dense 256", "ours"), ("4.1.1.1 Dense 256", "report"),
        ("4.1.1.2 Dense 256 + Dropout 0.5", "report"),
        ("4.1.1.3 GAP + Dense 256 + Dropout 0.5", "ours"), ("4.1.1.3 GAP + Dense 256 + Dropout 0.5", "report"),
        ("4.1.1.4 Data Augmentation + GAP + Dense 256 + Dropout 0.5", "report")]
    assert table.columns.tolist() == list(report.FLOW_COLUMNS)
    ours = table.loc[("4.1.1.3 GAP + Dense 256 + Dropout 0.5", "ours")]
    assert ours.tolist() == [2, 1.1, 40.0, 1.0, 45.0, 1234]
    theirs = table.loc[("4.1.1.3 GAP + Dense 256 + Dropout 0.5", "report")]
    assert theirs.tolist() == [16, 0.91, 62.51, 1.0143, 59.25, 132_356]
    assert table.loc[("4.1.1.1 Dense 256", "report")].isna().all()  # the report shows a figure only


# --- features of augmented copies, by epoch ---

def test_epoch_e_reads_copy_e_mod_copies():
    from cxrlib.science.data.pipeline import array_dataset

    n, copies = 5, 3
    features = np.repeat(np.arange(copies, dtype=np.float32), n)[:, None] * 100 + np.tile(np.arange(n), copies)[:, None]
    labels = np.arange(n) % 4
    stream = array_dataset(features, labels, batch_size=2, shuffle=True, seed=1, start_epoch=2, copies=copies)
    batches = list(stream.take(3 * 3))  # three epochs of three batches
    for epoch in range(3):
        rows = np.concatenate([b[0].numpy()[:, 0] for b in batches[3 * epoch:3 * epoch + 3]])
        seen = np.concatenate([b[1].numpy() for b in batches[3 * epoch:3 * epoch + 3]])
        assert set(rows // 100) == {(epoch + 2) % copies}  # the resumed stream starts at epoch 2
        assert sorted(rows % 100) == list(range(n))  # every image once per epoch
        np.testing.assert_array_equal(seen, labels[(rows % 100).astype(int)])  # with its own label
    with pytest.raises(ValueError, match="15 images but 12 labels"):
        array_dataset(features, np.zeros(4), copies=copies)


# --- the smaller training set ---

class Stub:
    """What smaller_training_set reads of a chapter: its settings and the training split."""

    def __init__(self, train: pd.DataFrame, **settings):
        self.settings, self.data = {"caps": None, "training_set": "more", "seed": 3, **settings}, self
        self.train = train

    def __getitem__(self, key):
        return self.settings[key]

    def split(self, name):
        return self.train


def test_the_smaller_set_is_half_the_patients_with_all_their_images():
    from cxrlib.machinery.transfer import smaller_training_set

    train = pd.DataFrame({"Patient ID": [7, 7, 7, 8, 9, 10, 11, 12, 13], "label": [0, 1, 2, 0, 1, 2, 3, 0, 1],
                          "split": "train"})
    keep, words = smaller_training_set(Stub(train))
    kept = set(train.loc[keep, "Patient ID"])
    assert len(kept) == 3  # 7 patients: 3 of them
    assert set(train.loc[train["Patient ID"].isin(kept)].index) == set(train.index[keep])  # whole patients
    assert words == f"half the training patients ({keep.sum()} images from 3 patients)"
    again, _ = smaller_training_set(Stub(train))
    np.testing.assert_array_equal(keep, again)  # seeded
    other = [tuple(smaller_training_set(Stub(train, seed=s))[0]) for s in range(8)]
    assert len(set(other)) > 1  # the seed draws it


def test_with_the_reports_caps_the_smaller_set_is_its_first_training_set():
    from cxrlib.machinery.transfer import smaller_training_set

    rows = [(f"p{c}-{i}", c) for c, n in enumerate(REPORT_COUNTS["train"].values()) for i in range(n)]
    train = pd.DataFrame(rows, columns=["Patient ID", "label"]).assign(split="train")
    keep, words = smaller_training_set(Stub(train, caps=REPORT_COUNTS))
    assert abs(keep.sum() - REPORT_FIRST_TRAIN_SIZE) <= 2  # each class rounded to its share of 7,996
    assert words == f"the report's first training set ({keep.sum():,} images)"
    keep, words = smaller_training_set(Stub(train, caps=REPORT_COUNTS, training_set="first"))
    assert words.startswith("half the training patients")  # already the first set: half of it


def test_the_smaller_set_keeps_whole_patients_drawn_by_its_own_seed():
    from cxrlib.science.data.splits import smaller_set as smaller_training_set

    train = pd.DataFrame({"Patient ID": [1, 1, 2, 3, 4], "label": [0, 1, 2, 3, 0], "split": "train"})
    keep, first = smaller_training_set(train, None, "more", seed=0, draw_seed=5)
    assert not first and keep.sum() in (2, 3) and len(set(train.loc[keep, "Patient ID"])) == 2
    np.testing.assert_array_equal(keep, smaller_training_set(train, None, "first", seed=9, draw_seed=5)[0])
