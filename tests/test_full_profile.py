"""Every chapter with the `full` profile's settings at toy size, so every branch only `full` takes runs in CI:
all unfreeze points, the report's caps and fractions, factor-3 Hyperband, no class weights, NIH's folder layout."""
from __future__ import annotations

import pytest

from benchmarks.nih_folder import make_nih_folder
from cxrlib import runner
from cxrlib.config import PROFILES
from tests.test_book import book_copy

# Only sizes, epochs and counts shrink; every other setting is the full profile's own.
TOY = {"IMAGE_SIZE": 64, "RESIZE_TO": 57, "BACKBONE_SIZE": 32, "EPOCHS": 1, "FINE_TUNE_EPOCHS": 1,
       "HYPERBAND_MAX_EPOCHS": 3, "BATCH_SIZE": 8, "ALLOW_RANDOM_WEIGHTS": True,
       "MAX_PER_CLASS": {"train": 16, "val": 10, "test": 10},  # the full profile wants >= 10 per class and split
       "GA_POPULATION": 6, "GA_GENERATIONS": 3, "BOOTSTRAP": 50}


@pytest.mark.book
def test_every_chapter_runs_with_full_settings_at_toy_size(isolated):
    full = PROFILES["full"]
    assert full["fine_tune"] == "all" and full["class_weight"] == "none" and full["caps"]  # the branches exercised
    folder = make_nih_folder(isolated / "nih", 2000, size=64)  # ~20 Atelectasis in val
    root = book_copy(isolated)
    executed = runner.run_chapters(profile="full", data_dir=str(folder), params=dict(TOY), book_root=root)
    assert executed == runner.chapter_order()
    for chapter in executed:
        assert (root / "book" / "chapters" / f"{chapter}.ipynb").is_file()
