"""The chapter runner: order, parameters, errors."""
from __future__ import annotations

import pytest

from cxrlib.core import registry
from cxrlib.machinery import cli
from cxrlib.machinery import runner
from cxrlib.machinery.chapter import resolve_parameters


def test_dependencies_come_first_in_book_order(monkeypatch):
    monkeypatch.setattr(registry, "CHAPTERS", {"a": (), "e": ("d",), "b": ("a",), "c": ("b",), "d": ()})
    assert runner.chapter_order(["c"]) == ["a", "b", "c"]
    assert runner.chapter_order(["e"]) == ["d", "e"]
    assert runner.chapter_order() == ["a", "b", "c", "d", "e"]  # e waits for d, which comes last in the book
    with pytest.raises(runner.RunnerError, match="unknown chapter 'x'"):
        runner.chapter_order(["x"])


def test_parameters_keep_their_types():
    assert cli.parse_assignments(["epochs=3", "resizer=false", "lr=1e-4", "caps={train: 5}"]) == {
        "EPOCHS": 3, "RESIZER": False, "LR": 1e-4, "CAPS": {"train": 5}}
    with pytest.raises(runner.RunnerError, match="name=value"):
        cli.parse_assignments(["epochs"])


def test_unknown_parameter_is_refused_before_running(isolated):
    with pytest.raises(runner.RunnerError, match="unknown parameter nope=1"):
        runner.run_chapters(["fused"], "smoke", params={"nope": 1}, book_root=isolated)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run_chapters(["fused"], "huge")


def test_chapter_parameters_report_only_real_changes():
    settings, changed = resolve_parameters("fused", "smoke", {"EPOCHS": 2, "SEED": 7, "AUGMENT": None})
    assert settings["epochs"] == 2 and settings["seed"] == 7 and settings["augment"] is False
    assert changed == {"seed": 7}
    with pytest.raises(ValueError, match="unknown parameter WIDTH=3"):
        resolve_parameters("fused", "smoke", {"WIDTH": 3})
    with pytest.raises(ValueError, match="chapter 'scratch' has no parameter dense_units"):
        resolve_parameters("scratch", "smoke", {"DENSE_UNITS": 64})


def test_cli_reports_errors_without_a_traceback(capsys):
    assert cli.main(["run", "nonexistent"]) == 2
    assert "unknown chapter" in capsys.readouterr().err


def test_stderr_goes_to_the_log_and_comes_back(tmp_path):
    import os

    log = tmp_path / "logs" / "chapter.log"
    with runner.stderr_to(log):
        os.write(2, b"tensorflow noise\n")
    assert log.read_text() == "tensorflow noise\n"
    os.write(2, b"")  # stderr is usable again


def test_cxr_list_shows_types_defaults_per_profile_and_ranges(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("epochs (int): most epochs per model")
    assert lines[at + 1] == "    allowed: a whole number >= 1 and <= 10,000"
    assert lines[at + 2] == "    default: smoke 2, cpu 25, full 30"
    assert "fused" in lines[at + 3] and "dataset" not in lines[at + 3]


def test_every_notebook_parameters_cell_is_the_generated_one():
    """The notebooks' parameters cells are generated from the table (`make cells`): none differs, each names a
    default for every parameter, and papermill reads them all as None."""
    from cxrlib.core.config import PROFILES
    from cxrlib.core.registry import REGISTRY
    from cxrlib.machinery.params import PARAMETERS, parameters_cell

    import nbformat

    for chapter in runner.CHAPTERS:
        notebook = nbformat.read(runner.notebooks_dir() / f"{chapter}.ipynb", as_version=4)
        source = next(c.source for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        assert source == parameters_cell(chapter), f"{chapter}: run make cells"
        cell = runner.parameters_cell(chapter)
        assert all(value is None for name, value in cell.items() if name not in ("PROFILE", "DATA_DIR"))
    for name in PARAMETERS:
        assert all(name in settings for settings in PROFILES.values()) or any(
            name in facts.defaults for facts in REGISTRY.values()), f"{name} has no default"


def test_cxr_browse_reaches_the_server_with_its_options(monkeypatch):
    """The browse subcommand calls browse.serve (a parser variable of the same name once hid the module)."""
    from cxrlib.machinery import browse, cli

    seen = []
    monkeypatch.setattr(browse, "serve", lambda *args: seen.append(args) or 0)
    assert cli.main(["browse", "--profile", "smoke", "--port", "8123", "--lab"]) == 0
    assert seen == [("smoke", 8123, None, "127.0.0.1", True, False)]
