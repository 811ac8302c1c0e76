"""The chapter runner: order, parameters, errors."""
from __future__ import annotations

import pytest

from cxrlib.core import manifest
from cxrlib.machinery import cli
from cxrlib.machinery import runner
from cxrlib.machinery.chapter import resolve_parameters


def test_dependencies_come_first_in_book_order(monkeypatch):
    monkeypatch.setattr(manifest, "CHAPTERS", {"a": (), "e": ("d",), "b": ("a",), "c": ("b",), "d": ()})
    assert runner.chapter_order(["c"]) == ["a", "b", "c"]
    assert runner.chapter_order(["e"]) == ["d", "e"]
    assert runner.chapter_order() == ["a", "b", "c", "d", "e"]  # e waits for d, which comes last in the book
    with pytest.raises(runner.RunnerError, match="unknown chapter 'x'"):
        runner.chapter_order(["x"])


def test_parameters_keep_their_types():
    assert cli.parse_assignments(["epochs=3", "resizer=false", "lr=1e-4", "caps={train: 5}"]) == {
        "epochs": 3, "resizer": False, "lr": 1e-4, "caps": {"train": 5}}
    with pytest.raises(runner.RunnerError, match="name=value"):
        cli.parse_assignments(["epochs"])


def test_unknown_parameter_is_refused_before_running(isolated):
    with pytest.raises(runner.RunnerError, match="unknown parameter nope=1; `cxr list CHAPTER` lists"):
        runner.run_chapters(["fused"], "smoke", params={"nope": 1}, book_root=isolated)


def test_a_mistyped_parameter_is_echoed_as_typed_with_the_nearest_name(capsys):
    assert cli.main(["run", "fused", "--profile", "smoke", "-p", "learning_rat=0.001"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cxr: error: unknown parameter learning_rat=0.001; did you mean learning_rate?")
    with pytest.raises(runner.RunnerError, match=r"parameter epochs=0 is not allowed: 0 is less than the minimum"):
        runner.check_parameters({"epochs": 0}, ["fused"])


def test_class_weight_none_is_read_as_none_in_any_case():
    """`-p class_weight=None` (YAML reads the string 'None') once answered "expected one of 'none', 'balanced' or
    None"; a choice is now matched in any case, and None itself reads as 'none'."""
    typed = cli.parse_assignments(["class_weight=None", "fine_tune=First"])
    assert runner.check_parameters(typed, ["pretrained"]) == {"class_weight": "none", "fine_tune": "first"}
    assert manifest.check("class_weight", None) == "none"
    with pytest.raises(manifest.ParameterError, match=r"class_weight='nothing' is not allowed: 'nothing' is not one "
                                                       r"of \['none', 'balanced'\]"):
        manifest.check("class_weight", "nothing")


def test_nested_limits_and_fractions_are_checked_where_they_go_wrong():
    with pytest.raises(manifest.ParameterError, match=r"0 is less than the minimum of 1 \(at caps\['train'\]\['Effusion'\]\)"):
        manifest.check("caps", {"train": {"Effusion": 0}})
    with pytest.raises(manifest.ParameterError, match="'trian' is not one of"):
        manifest.check("max_per_class", {"trian": 5})
    with pytest.raises(manifest.ParameterError, match="does not sum to 1"):
        manifest.check("fractions", [0.5, 0.2, 0.2])
    for name, value in (("epochs", True), ("epochs", 2.0), ("learning_rate", float("nan")), ("learning_rate", 0)):
        with pytest.raises(manifest.ParameterError, match=f"parameter {name}="):
            manifest.check(name, value)
    assert manifest.check("learning_rate", 1) == 1.0 and manifest.check("backbones", ["vgg16"]) == ("vgg16",)
    assert manifest.check("caps", {"val": {"Effusion": 3}, "test": None}) == {"val": {"Effusion": 3}, "test": None}


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run_chapters(["fused"], "huge")


def test_chapter_parameters_report_only_real_changes():
    default = manifest.profile_settings("smoke")["epochs"]
    settings, changed = resolve_parameters("fused", "smoke", {"EPOCHS": default, "SEED": 7, "AUGMENT": None})
    assert settings["epochs"] == default and settings["seed"] == 7 and settings["augment"] is False
    assert changed == {"seed": 7}
    with pytest.raises(ValueError, match="unknown parameter WIDTH=3; `cxr list fused` lists"):
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


def test_cxr_list_shows_the_chapters_and_what_each_reads(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(runner.CHAPTERS)
    assert "  fused_grid      reads fused" in lines and "  dataset         reads nothing" in lines


def test_cxr_list_chapter_shows_its_parameters_with_schema_and_defaults_per_profile(capsys):
    assert cli.main(["list", "fused"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("epochs: most epochs per model")
    assert lines[at + 1] == '    allowed: {"type": "integer", "minimum": 1, "maximum": 10000}'
    epochs = {profile: manifest.profile_settings(profile)["epochs"] for profile in ("smoke", "cpu", "full")}
    assert lines[at + 2] == "    default: smoke {smoke}, cpu {cpu}, full {full}".format(**epochs)
    assert "dense_units: units of each of the two dense layers" in lines and not any(
        line.startswith("backbones:") for line in lines)
    assert cli.main(["list", "dataset"]) == 0
    assert "epochs: most epochs per model" not in capsys.readouterr().out.splitlines()
    assert cli.main(["list", "fuse"]) == 2 and "unknown chapter 'fuse'" in capsys.readouterr().err


def test_every_notebook_parameters_cell_is_the_generated_one():
    """The notebooks' parameters cells are generated from the manifest (`make cells`): none differs, each names a
    default for every parameter in every profile, and papermill reads them all as None."""
    import nbformat

    from cxrlib.core.manifest import PARAMETERS, PROFILES, parameters_cell

    for chapter in runner.CHAPTERS:
        notebook = nbformat.read(runner.notebooks_dir() / f"{chapter}.ipynb", as_version=4)
        source = next(c.source for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        assert source == parameters_cell(chapter), f"{chapter}: run make cells"
        cell = runner.parameters_cell(chapter)
        assert all(value is None for name, value in cell.items() if name not in ("PROFILE", "DATA_DIR"))
    for profile, settings in PROFILES.items():
        assert set(PARAMETERS) <= set(settings), f"{profile} lacks {set(PARAMETERS) - set(settings)}"
        assert {name: manifest.check(name, settings[name]) for name in PARAMETERS} == {
            name: manifest.normal(PARAMETERS[name].schema, settings[name]) for name in PARAMETERS}


def test_make_cells_rewrites_a_cell_that_differs_and_nothing_else(tmp_path):
    import shutil

    for chapter in runner.CHAPTERS:
        shutil.copy(runner.notebooks_dir() / f"{chapter}.ipynb", tmp_path)
    assert cli.write_parameter_cells(tmp_path) == []
    path = tmp_path / "fused.ipynb"
    path.write_text(path.read_text().replace("EPOCHS = None  # most epochs per model", "EPOCHS = 3  # edited"))
    assert cli.write_parameter_cells(tmp_path) == ["fused.ipynb"]
    assert path.read_bytes() == (runner.notebooks_dir() / "fused.ipynb").read_bytes()


def test_every_report_pairing_names_a_row_of_the_report():
    """Each chapter's models and questions in the manifest name the report's rows as report.REPORT spells them."""
    from cxrlib.present.report import REPORT

    rows = {row for facts in manifest.REGISTRY.values() for row in facts.models.values()}
    rows |= {row for questions in manifest.QUESTIONS.values() for q in questions for row in q[3:] if row}
    assert rows and rows <= set(REPORT), rows - set(REPORT)
    assert manifest.counterpart("pretrained", "chexnet_finetune_conv5") == "CheXNet1"
    assert manifest.counterpart("ensemble", "fused/fused") == "Fused (ensemble member)"
    assert manifest.counterpart("scratch", "first_cnn") is None and manifest.counterpart("nope", "x") is None


def test_cxr_browse_reaches_the_server_with_its_options(monkeypatch):
    """The browse subcommand calls browse.serve (a parser variable of the same name once hid the module)."""
    from cxrlib.machinery import browse, cli

    seen = []
    monkeypatch.setattr(browse, "serve", lambda *args: seen.append(args) or 0)
    assert cli.main(["browse", "--profile", "smoke", "--port", "8123", "--lab"]) == 0
    assert seen == [("smoke", 8123, None, "127.0.0.1", True, False)]
