"""The suite is sealed from the machine: whatever CXR_* variables, KERAS_HOME or PROFILE the caller's shell holds,
the session runs on its own (conftest.seal_environment), writes only into temporary folders, and says so when a
shortcut such as CXR_TEST_BOOK is taken. The last test runs a child pytest on a few fast files, in a copy of the
project, with junk in every one of those variables, and shows that the same tests pass and that the copy's tree,
the junk KERAS_HOME and the home folder are left as they were."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from cxrlib.core.config import REPO_ROOT

# what the child session needs of the project: the library, its data and notebooks, the tests, the project files
COPY = ("cxrlib", "data", "notebooks", "tests", "book/intro.template.md", "_static", "_config.yml", "_toc.yml",
        "pyproject.toml", "requirements", "environment.yml", "Makefile")
# fast files that read the data, cache, runs and weights locations through the code's defaults
CHILD_TESTS = ("tests/test_suite_sealed.py::test_the_session_is_sealed_from_the_callers_environment",
               "tests/test_known_answers.py", "tests/test_report_numbers.py", "tests/test_default_data.py",
               "tests/test_feature_cache.py")


def test_the_session_is_sealed_from_the_callers_environment():
    from cxrlib.core import config
    from cxrlib.machinery.inputs import sources
    from cxrlib.machinery import weights as weight_files
    from cxrlib.machinery.runs import RUNNER_ENV

    temp = Path(tempfile.gettempdir()).resolve()
    assert os.environ["CXR_OFFLINE"] == "1"
    for name in ("CXR_CACHE_DIR", "CXR_RUNS_DIR", "KERAS_HOME", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        assert Path(os.environ[name]).resolve().is_relative_to(temp), f"{name} is outside the temporary folder"
    for name in ("CXR_DATA_DIR", "CXR_SAMPLE_DIR", "CXR_NIH_METADATA", "CXR_NOTEBOOKS_DIR", "CXR_CHEXNET_WEIGHTS",
                 "CXR_TEST_BOOK", "CXR_BROWSE_PROFILE", "CXR_BENCH_DIR", RUNNER_ENV, "PROFILE"):
        assert name not in os.environ, f"{name} leaked in from the caller's environment"
    # what the code therefore uses: the repository's data, notebooks and weights defaults, caches in the session's
    assert sources.resolve_source().root == REPO_ROOT / "data" / "cxr14-sample"
    assert sources.nih_metadata_dir() == REPO_ROOT / "data" / "nih-metadata"
    assert config.notebooks_dir() == REPO_ROOT / "notebooks"
    assert config.cache_dir().resolve().is_relative_to(temp) and config.runs_dir().resolve().is_relative_to(temp)
    assert weight_files.chexnet_weights_path() is None and not weight_files.online()
    assert weight_files.imagenet_weights("vgg16")[0] is None  # the session's KERAS_HOME holds no weights
    import keras

    assert Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else os.environ["KERAS_HOME"]) \
        .resolve().is_relative_to(temp)


def test_importing_the_conftest_again_seals_nothing_anew():
    import conftest  # as pytest loaded it

    import tests.conftest  # as test files import its helpers

    assert tests.conftest.SESSION_DIR == conftest.SESSION_DIR
    assert os.environ["CXR_CACHE_DIR"] == str(conftest.SESSION_DIR / "cache")
    assert os.environ["KERAS_HOME"] == str(conftest.SESSION_DIR / "keras-home")


def tree(root: Path) -> dict:
    """Every file under root with its size and modification time, Python's byte-code caches left out."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def junk_environment(tmp_path: Path) -> dict:
    """A caller's shell with junk in every variable the suite reads, each chosen to break a test that let it in."""
    junk_keras = tmp_path / "junk-keras-home"
    (junk_keras / "models").mkdir(parents=True)
    for name in ("vgg16", "resnet50", "resnet152", "chexnet"):  # 'ImageNet' files that are not weights at all
        (junk_keras / "models" / f"{name}.h5").write_bytes(b"junk")
    from cxrlib.core.backbones import BACKBONES

    for spec in BACKBONES.values():
        (junk_keras / "models" / spec.weights_file).write_bytes(b"junk")
    (tmp_path / "junk-weights.h5").write_bytes(b"junk")
    (tmp_path / "a-file").write_text("a file where a folder is expected")
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    env.update({
        "CXR_DATA_DIR": str(tmp_path / "no-such-nih-folder"), "CXR_SAMPLE_DIR": str(tmp_path / "no-such-sample"),
        "CXR_NIH_METADATA": str(tmp_path / "no-such-metadata"), "CXR_NOTEBOOKS_DIR": str(tmp_path / "no-notebooks"),
        "CXR_CHEXNET_WEIGHTS": str(tmp_path / "junk-weights.h5"), "CXR_CACHE_DIR": str(tmp_path / "a-file" / "cache"),
        "CXR_RUNS_DIR": str(tmp_path / "a-file" / "runs"), "CXR_RUNNER": "1", "CXR_OFFLINE": "",
        "CXR_BROWSE_PROFILE": "junk", "CXR_BENCH_DIR": str(tmp_path / "a-file"), "PROFILE": "junk",
        "CXR_TEST_BOOK": str(tmp_path / "no-such-book"), "KERAS_HOME": str(junk_keras),
        "MPLCONFIGDIR": str(tmp_path / "a-file"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "a-file"),
        "IPYTHONDIR": str(tmp_path / "a-file"),
        "HOME": str(tmp_path / "home"), "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def test_junk_in_the_callers_environment_changes_nothing(tmp_path):
    copy = tmp_path / "project"
    for name in COPY:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    env = junk_environment(tmp_path)
    env["PYTHONPATH"] = str(copy)  # the copy's own library, ahead of the editable install
    before, keras_before = tree(copy), tree(Path(env["KERAS_HOME"]))
    report = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "not book and not browser",
                           f"--junitxml={report}", *CHILD_TESTS], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    assert counts["tests"] >= 30, counts  # every test of those files ran, and passed
    # the shortcut was announced on the run's first lines
    assert f"cxr: SHORTCUT CXR_TEST_BOOK: the suite reuses the smoke book already built at {tmp_path / 'no-such-book'}" \
        in done.stdout
    # nothing written into the project, the caller's KERAS_HOME or the home folder
    assert tree(copy) == before, sorted(set(tree(copy).items()) ^ set(before.items()))[:10]
    assert tree(Path(env["KERAS_HOME"])) == keras_before
    written = sorted(str(p.relative_to(tmp_path / "home")) for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert written == [], written
