"""Facts on pages come from the configuration, commands work as written from the project folder, and what the book
and the runner write is ignored by git."""
from __future__ import annotations

import re
import shutil
import subprocess

import nbformat

from cxrlib.core import config
from cxrlib.machinery import repro, runs, site
from cxrlib.present import book_pages

ROOT = config.REPO_ROOT


def book_root(tmp_path, profile=None):
    """A book root with the index's template and, given a profile, one executed page and its results."""
    (tmp_path / "book" / "chapters").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "intro.template.md", tmp_path / "book")
    if profile:
        page = nbformat.v4.new_notebook(metadata={"papermill": {"parameters": {"PROFILE": profile}}})
        nbformat.write(page, tmp_path / "book" / "chapters" / "dataset.ipynb")
        runs.ChapterRun(profile, "dataset", tmp_path / "runs").write_info({"data": "real NIH sample (456 images)"})
    return tmp_path


def test_the_index_states_the_configuration_and_follows_it(tmp_path, monkeypatch):
    root = book_root(tmp_path, "smoke")
    text = site.intro_page(root, root / "runs")
    cpu, smoke = site.PROFILES["cpu"], site.PROFILES["smoke"]
    assert f"| `cpu` | {book_pages.PURPOSE['cpu']} | {cpu['image_size']} px (resized to {cpu['resize_to']})" in text
    assert f"{smoke['max_per_class']['train']} training images per class" in text
    assert "This build ran the profile `smoke` on the real NIH sample (456 images)." in text
    assert "{{" not in text and "128 px" not in text
    monkeypatch.setitem(site.PROFILES, "cpu", {**cpu, "image_size": 200, "resize_to": 181})
    monkeypatch.setitem(site.PROFILES, "smoke", {**smoke, "max_per_class": {"train": 5, "val": 3, "test": 3}})
    text = site.intro_page(root, root / "runs")
    assert "200 px (resized to 181)" in text and "5/3/3 per class" in text and "5 training images per class" in text
    assert "No chapter of this build" in site.intro_page(book_root(tmp_path / "empty"))


def test_prepare_pages_writes_the_index(tmp_path):
    root = book_root(tmp_path, "smoke")
    site.prepare_pages(root, root / "runs", log=lambda *a: None)
    assert (root / "book" / "intro.md").read_text() == site.intro_page(root, root / "runs")


def test_what_the_book_and_the_runner_write_is_ignored_by_git(tmp_path):
    root = book_root(tmp_path, "smoke")
    site.prepare_pages(root, root / "runs", log=lambda *a: None)
    written = ["book/build.md", "book/intro.md", "book/chapters/fused.ipynb", "book/chapters/fused.stamp",
               "runs/smoke/.kept/fused/abc/page.ipynb", "runs/smoke/.outcomes/fused.out", "runs/smoke/timings.lock",
               ".cache/content_index.sqlite", "_build/html/index.html", ".venv/bin/cxr"]
    assert {p.relative_to(root).as_posix() for p in (root / "book").glob("*.md")} <= {*written, "book/intro.template.md"}
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *written], capture_output=True,
                             text=True).stdout.split()
    assert ignored == written
    assert subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", "book/intro.template.md"]
                          ).returncode == 1  # the template is the tracked source


def test_commands_work_as_written_from_the_project_folder():
    assert repro.rebuild_command("fused", "cpu", {}).startswith(f"{config.CXR} run fused")
    assert (ROOT / config.CXR).is_file()  # where `make env` installs it
    readme_blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    commands = [line for block in readme_blocks for line in block.splitlines() if re.match(r"\S*cxr ", line)]
    assert commands and all(line.startswith(f"{config.CXR} ") for line in commands)
