"""Shared fixtures: small NIH-layout folders the tests write themselves, and the real sample shipped in data/."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CXR_OFFLINE"] = "1"  # tests never touch the network (also inherited by notebook kernels)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "cxr14-sample"  # ships with the project


def write_folder(root: Path, rows, image_size: int = 32) -> Path:
    """An NIH-layout folder: images/ with one random PNG per row, and Data_Entry_2017.csv."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for row in rows:
        pixels = rng.integers(0, 255, (image_size, image_size), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / row["Image Index"])
    pd.DataFrame(rows).to_csv(root / "Data_Entry_2017.csv", index=False)
    return root


def make_rows(per_class: int = 12, images_per_patient: int = 2):
    """Rows in NIH's format for the four classes plus distractors that must be filtered out."""
    from cxrlib.config import CLASSES

    rows, patient = [], 1000
    for label in (*CLASSES, "Effusion|Infiltration", "Pneumonia"):
        for i in range(per_class):
            if i % images_per_patient == 0:
                patient += 1
            rows.append({"Image Index": f"{patient:08d}_{i % images_per_patient:03d}.png",
                         "Finding Labels": label, "Patient ID": patient})
    return rows


@pytest.fixture
def nih_folder(tmp_path):
    """A tiny NIH folder with 12 images per class, two per patient."""
    return write_folder(tmp_path / "nih", make_rows())


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Caches and run folders under tmp_path, so tests never touch the user's."""
    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXR_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


@pytest.fixture
def sample_dir():
    """The real sample shipped in data/cxr14-sample: part of the project, so its absence is a failure."""
    assert (SAMPLE / "labels.csv").is_file(), f"the real sample is missing from {SAMPLE}"
    return SAMPLE


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The smoke book executed and built once per session (test_book.py and test_browser.py share it), in a
    folder of its own: the book root, with runs/ and cache/ beside it.

    CXR_TEST_BOOK=/path/to/a/built/book/root reuses a book already built in that layout (root, ../runs,
    ../cache), for iterating on the rendering without executing every chapter again.
    """
    from cxrlib import runner

    given = os.environ.get("CXR_TEST_BOOK")
    if given:
        return Path(given)
    base = tmp_path_factory.mktemp("smoke-book")
    root = base / "bookroot"
    (root / "book").mkdir(parents=True)
    repo = Path(__file__).resolve().parents[1]
    for name in ("_config.yml", "_toc.yml", "book/intro.md", "_static/cxr.css"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text((repo / name).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_CACHE_DIR", str(base / "cache"))
        patch.setenv("CXR_RUNS_DIR", str(base / "runs"))
        patch.setenv("CXR_SAMPLE_DIR", str(SAMPLE))
        executed = runner.run_chapters(profile="smoke", book_root=root)
        assert executed == runner.chapter_order(), f"the smoke build executed {executed}"
        runner.build_book(root)
    return root
