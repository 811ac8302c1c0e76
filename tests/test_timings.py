"""The build page's chapter times: slowest first, a total, and the slowest three say why."""
from __future__ import annotations

import json

from cxrlib.core.manifest import REGISTRY
from cxrlib.machinery import site as book


def test_slowest_chapters_say_what_they_trained(tmp_path):
    profile = tmp_path / "smoke"
    (profile / "pretrained" / "histories").mkdir(parents=True)
    for name, epochs in (("vgg16_features", 2), ("vgg16_finetune", 1)):
        rows = "\n".join(f"{e},0.5" for e in range(epochs))
        (profile / "pretrained" / "histories" / f"{name}.csv").write_text(f"epoch,loss\n{rows}\n")
    (profile / "timings.json").write_text(json.dumps({"dataset": 4.4, "pretrained": 61.2, "fused": 20.0,
                                                      "conclusions": 6.0, "ensemble": 2.0}))
    table = book.timings_table(profile)
    assert list(table["chapter"]) == ["pretrained", "fused", "conclusions", "dataset", "ensemble", "all chapters"]
    assert list(table["seconds"]) == [61, 20, 6, 4, 2, 93]
    assert table["why"][0].endswith("; 2 models (3 epochs in all)")
    assert table["why"][1] == REGISTRY["fused"].work and table["why"][2]
    assert table["why"][3] == table["why"][4] == ""


def test_every_chapter_has_its_work_in_words():
    assert all(facts.work for facts in REGISTRY.values())
