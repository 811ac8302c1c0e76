"""A trained result's identity covers what shapes its numbers (data, decode, settings, notebook, science and core code),
not presentation or machinery: a figure fixed in present/ reuses every trained model, a change in science/ retrains."""
from __future__ import annotations

import shutil

import pytest

from cxrlib.machinery import identity
from cxrlib.machinery.inputs import decode, load_for
from cxrlib.core.manifest import resolve_parameters
from tests.test_rerun import nih_folder, tiny_fit  # noqa: F401  (a folder the smoke profile accepts)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of cxrlib whose files the identities hash, so a test may edit them."""
    copy = tmp_path / "package" / "cxrlib"
    shutil.copytree(identity.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "PACKAGE", copy)
    return copy


def edit(path):
    path.write_text(path.read_text() + "\n# edited by a test\n")


@pytest.mark.parametrize("part, shapes_numbers", [("present", False), ("machinery", False), ("science", True),
                                                  ("core/config.py", True), ("core/manifest.py", False)])
def test_which_code_a_trained_result_depends_on(package, part, shapes_numbers):
    """The manifest's values reach an identity as settings and upstream identities: its words train nothing."""
    numbers, whole = identity.code_digest(), identity.library_digest()
    edit(sorted((package / part).rglob("*.py"))[-1] if (package / part).is_dir() else package / part)
    assert (identity.code_digest() != numbers) == shapes_numbers
    assert identity.library_digest() != whole  # every page is made by the whole library


def test_a_figure_fixed_in_present_reuses_trained_models_and_a_science_change_retrains(isolated, nih_folder, package,
                                                                                      capsys):
    _, first = tiny_fit(nih_folder, isolated / "runs")
    edit(package / "present" / "plots.py")
    capsys.readouterr()
    _, again = tiny_fit(nih_folder, isolated / "runs")
    assert again.identity == first.identity and "reusing it" in capsys.readouterr().out
    edit(package / "science" / "metrics.py")
    _, after = tiny_fit(nih_folder, isolated / "runs")
    assert after.identity != first.identity and "reusing" not in capsys.readouterr().out


def test_the_decode_version_is_part_of_the_data_identity(isolated, nih_folder, monkeypatch):
    settings, _ = resolve_parameters("fused", "smoke", {})
    data = load_for(nih_folder, settings)
    before = identity.data_identity(data, settings)
    assert identity.data_identity(data, settings) == before
    monkeypatch.setattr(decode, "DECODE_VERSION", decode.DECODE_VERSION + 1)
    assert identity.data_identity(data, settings) != before
