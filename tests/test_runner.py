"""The chapter runner: order, parameters, errors."""
from __future__ import annotations

import pytest

from cxrlib import runner
from cxrlib.chapter import resolve_parameters


def test_dependencies_come_first_in_book_order(monkeypatch):
    monkeypatch.setattr(runner, "CHAPTERS", {"a": (), "e": ("d",), "b": ("a",), "c": ("b",), "d": ()})
    assert runner.chapter_order(["c"]) == ["a", "b", "c"]
    assert runner.chapter_order() == ["a", "d", "e", "b", "c"]
    with pytest.raises(runner.RunnerError, match="unknown chapter 'x'"):
        runner.chapter_order(["x"])


def test_parameters_keep_their_types():
    assert runner.parse_assignments(["epochs=3", "resizer=false", "lr=1e-4", "caps={train: 5}"]) == {
        "EPOCHS": 3, "RESIZER": False, "LR": 1e-4, "CAPS": {"train": 5}}
    with pytest.raises(runner.RunnerError, match="name=value"):
        runner.parse_assignments(["epochs"])


def test_unknown_parameter_is_refused_before_running(isolated):
    with pytest.raises(runner.RunnerError, match="has a parameter NOPE"):
        runner.run_chapters(["fused"], "smoke", params={"nope": 1}, book_root=isolated)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run_chapters(["fused"], "huge")


def test_chapter_parameters_report_only_real_changes():
    settings, changed = resolve_parameters("fused", "smoke", {"EPOCHS": 2, "SEED": 7, "AUGMENT": None})
    assert settings["epochs"] == 2 and settings["seed"] == 7 and settings["augment"] is False
    assert changed == {"seed": 7}
    with pytest.raises(ValueError, match="no parameter"):
        resolve_parameters("fused", "smoke", {"WIDTH": 3})


def test_cli_reports_errors_without_a_traceback(capsys):
    assert runner.main(["run", "nonexistent"]) == 2
    assert "unknown chapter" in capsys.readouterr().err


def test_stderr_goes_to_the_log_and_comes_back(tmp_path):
    import os

    log = tmp_path / "logs" / "chapter.log"
    with runner.stderr_to(log):
        os.write(2, b"tensorflow noise\n")
    assert log.read_text() == "tensorflow noise\n"
    os.write(2, b"")  # stderr is usable again
