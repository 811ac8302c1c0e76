"""End to end: every chapter executed with papermill in the smoke profile, then the book built."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from cxrlib.machinery import runner
from cxrlib.machinery import site
from tests.conftest import SAMPLE

ROOT = Path(__file__).resolve().parents[1]


def book_copy(tmp_path: Path) -> Path:
    """A book root of its own, so tests never overwrite the user's executed chapters."""
    root = tmp_path / "bookroot"
    (root / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copy(ROOT / "book" / "intro.template.md", root / "book" / "intro.template.md")
    shutil.copytree(ROOT / "_static", root / "_static")
    return root


def outputs(path: Path) -> str:
    """All text and HTML outputs of an executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    texts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(texts)


@pytest.mark.book
def test_smoke_book(smoke_book, monkeypatch):
    """The session's one smoke build (shared with the browser test), on the real sample shipped in data/."""
    base = smoke_book.parent  # the smoke_book fixture keeps runs/ and cache/ beside the book root
    for chapter in runner.CHAPTERS:
        text = outputs(smoke_book / "book" / "chapters" / f"{chapter}.ipynb")
        assert "Provenance." in text and 'class="cxr-summary"' in text
        assert "real NIH ChestX-ray14 sample shipped with the project in data/cxr14-sample" in text
        assert "SYNTHETIC" not in text
        page = (smoke_book / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert len(images) >= 2, f"{chapter} shows {len(images)} figures"
        assert all((smoke_book / "_build" / "html" / "book" / "chapters" / src).resolve().is_file() for src in images)
    runs = base / "runs" / "smoke" / "fused"
    assert (runs / "models" / "fused.keras").is_file()
    assert (runs / "predictions" / "fused__test.csv").is_file() and (runs / "metrics" / "fused.csv").is_file()

    monkeypatch.setenv("CXR_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("CXR_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("CXR_SAMPLE_DIR", str(SAMPLE))
    assert runner.run_chapters(profile="smoke", book_root=smoke_book) == []  # nothing changed: all skipped
    (base / "runs" / "smoke" / "dataset" / "chapter.json").unlink()  # results lost: run again
    assert runner.run_chapters(["dataset"], profile="smoke", book_root=smoke_book) == ["dataset"]


@pytest.mark.book
def test_synthetic_run_is_labelled_loudly(isolated):
    root = book_copy(isolated)
    runner.run_chapters(["dataset"], profile="smoke", data_dir="synthetic", book_root=root)  # asked for, never a fallback
    text = outputs(root / "book" / "chapters" / "dataset.ipynb")
    assert "SYNTHETIC DATA" in text and "border:3px solid" in text


def test_missing_chapters_are_named_before_building(isolated):
    root = book_copy(isolated)
    with pytest.raises(runner.RunnerError, match="book/chapters/dataset"):
        site.build_book(root)
