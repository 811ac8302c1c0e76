"""Shared fixtures: small NIH-layout folders the tests write themselves, and the real sample shipped in data/."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# --- the suite is sealed from the machine it runs on ---
# Every CXR_* variable of the caller's shell is dropped before anything is imported (Keras reads KERAS_HOME on
# import), then the session sets its own: caches and run folders in a temporary folder of the session, an empty
# KERAS_HOME (no ImageNet file of the user's changes what the pretrained chapter does), no network. The data
# variables (CXR_DATA_DIR, CXR_SAMPLE_DIR, CXR_NIH_METADATA, CXR_NOTEBOOKS_DIR, CXR_CHEXNET_WEIGHTS), the runner's
# CXR_RUNNER and PROFILE (the CLI's default profile) stay unset, so the code takes the repository's defaults;
# tests that want others set them themselves. Notebook kernels and child processes inherit the same environment.
# Deliberate shortcuts (SHORTCUTS) are read from the caller's value, and say so on the first line of the run.
SHORTCUTS = {"CXR_TEST_BOOK": "reuses the smoke book already built at {value} instead of executing every chapter"}
CLEARED = ("PROFILE",)
GIVEN_SHORTCUTS = {}


def seal_environment() -> Path:
    """Drop every CXR_* variable (keeping the shortcuts' values aside) and set the session's own; return its folder."""
    base = Path(tempfile.mkdtemp(prefix="cxr-tests-"))
    for name in [k for k in os.environ if k.startswith("CXR_") or k in CLEARED]:
        value = os.environ.pop(name)
        if name in SHORTCUTS and value:
            GIVEN_SHORTCUTS[name] = value
    (base / "keras-home").mkdir()
    os.environ.update({"CXR_OFFLINE": "1",  # tests never touch the network
                       "CXR_CACHE_DIR": str(base / "cache"), "CXR_RUNS_DIR": str(base / "runs"),
                       "KERAS_HOME": str(base / "keras-home"),
                       # matplotlib's font cache and a user's matplotlibrc, Jupyter's kernel connection files,
                       # the kernels' IPython profile (a user's startup files never run in a chapter under test)
                       "MPLCONFIGDIR": str(base / "matplotlib"), "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
                       "IPYTHONDIR": str(base / "ipython")})
    return base


def sealed_by() -> object:
    """This file's module when it has already sealed the session: tests import it again as tests.conftest (pytest
    loads it as conftest), and the second import must take the first one's folder, never seal anew."""
    here = Path(__file__).resolve()
    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "").endswith("conftest") and hasattr(module, "SESSION_DIR")
                and Path(getattr(module, "__file__", "") or "").resolve() == here):
            return module
    return None


FIRST = sealed_by()
if FIRST is not None:
    SESSION_DIR, GIVEN_SHORTCUTS = FIRST.SESSION_DIR, FIRST.GIVEN_SHORTCUTS
else:
    SESSION_DIR = seal_environment()
SEALED = {k: os.environ[k] for k in ("CXR_OFFLINE", "CXR_CACHE_DIR", "CXR_RUNS_DIR", "KERAS_HOME", "MPLCONFIGDIR",
                                     "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")}


def pytest_report_header(config):
    """The first lines of the run: where the session keeps its files, and any shortcut taken."""
    lines = [f"cxr: environment sealed; caches, run folders, KERAS_HOME and MPLCONFIGDIR under {SESSION_DIR}"]
    lines += [f"cxr: SHORTCUT {name}: the suite {SHORTCUTS[name].format(value=value)}"
              for name, value in GIVEN_SHORTCUTS.items()]
    return lines


def pytest_unconfigure(config):
    """The session's folder goes with the session."""
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def sealed_environment():
    """Every test session starts sealed: no CXR_* variable but the session's own, KERAS_HOME empty of weights."""
    stray = sorted(k for k in os.environ if k.startswith("CXR_") and k not in SEALED)
    changed = sorted(k for k, v in SEALED.items() if os.environ.get(k) != v)
    if stray or changed:  # something set them after the conftest ran: seal again
        for name in stray:
            os.environ.pop(name)
        os.environ.update(SEALED)
    assert not (Path(SEALED["KERAS_HOME"]) / "models").exists(), "the session's KERAS_HOME holds weights"
    return SESSION_DIR


def shortcut(name: str):
    """A shortcut's value when the caller gave one, announced (a warning in the summary) whenever it is used."""
    value = GIVEN_SHORTCUTS.get(name)
    if value:
        message = f"SHORTCUT {name}={value}: the suite {SHORTCUTS[name].format(value=value)}"
        print(message)
        warnings.warn(message, stacklevel=2)
    return value


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
    from cxrlib.core.config import CLASSES

    rows, patient = [], 1000
    for label in (*CLASSES, "Effusion|Infiltration", "Pneumonia"):
        for i in range(per_class):
            if i % images_per_patient == 0:
                patient += 1
            rows.append({"Image Index": f"{patient:08d}_{i % images_per_patient:03d}.png",
                         "Finding Labels": label, "Patient ID": patient})
    return rows


@contextmanager
def toy_world(tmp_path_factory, name: str, **env):
    """A module's own tiny NIH folder, image cache and run folder, with the environment pointing at them."""
    base = tmp_path_factory.mktemp(name)
    folder = write_folder(base / "nih", make_rows())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_CACHE_DIR", str(base / "cache"))
        patch.setenv("CXR_RUNS_DIR", str(base / "runs"))
        for key, value in env.items():
            patch.setenv(key, str(base / value))
        yield base, folder


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
    from cxrlib.machinery import runner, site

    given = shortcut("CXR_TEST_BOOK")  # read from the caller's shell before the session sealed the environment
    if given:
        return Path(given)
    base = tmp_path_factory.mktemp("smoke-book")
    root = base / "bookroot"
    (root / "book").mkdir(parents=True)
    repo = Path(__file__).resolve().parents[1]
    for name in ("_config.yml", "_toc.yml", "book/intro.template.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text((repo / name).read_text())
    shutil.copytree(repo / "_static", root / "_static")  # the table style and the favicon
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_CACHE_DIR", str(base / "cache"))
        patch.setenv("CXR_RUNS_DIR", str(base / "runs"))
        patch.setenv("CXR_SAMPLE_DIR", str(SAMPLE))
        executed = runner.run_chapters(profile="smoke", book_root=root, jobs=2)  # as `make book` runs it
        assert sorted(executed) == sorted(runner.chapter_order()), f"the smoke build executed {executed}"
        site.build_book(root)
    return root
