"""Reproducibility: the lock file behind a page, the command that rebuilds it, and run folders compared.

    python -m cxrlib.machinery.repro environment-yml requirements/lock-py311.txt   # what `make lock` writes to environment.yml
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cxrlib.core.config import CXR, REPO_ROOT
from cxrlib.core.manifest import CHAPTERS, RunnerError, chapter_order

LOCK_DIR = REPO_ROOT / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    """A package name as registries compare them (PEP 503): lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(python: str | None = None) -> Path:
    """The lock file for a Python version ('3.11'; default: the running one)."""
    python = python or f"{sys.version_info[0]}.{sys.version_info[1]}"
    return LOCK_DIR / f"lock-py{python.replace('.', '')}.txt"


def lock_hash(path=None) -> str:
    """The first 12 hex digits of the lock file's SHA-256, so a page names the exact environment it ran in."""
    path = Path(path) if path else lock_file()
    if not path.is_file():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def locked_versions(path) -> dict:
    """Normalized package name -> version pinned in a lock (or any requirements) file."""
    matches = (_PIN.match(line.strip()) for line in Path(path).read_text().splitlines())
    return {normalize(match.group(1)): match.group(2) for match in matches if match}


def environment_differences(path=None) -> list:
    """'name installed X, locked Y' for each locked package installed at another version (or missing)."""
    path = Path(path) if path else lock_file()
    if not path.is_file():
        return [f"no lock file {path.name} for this Python"]
    found = []
    for name, locked in locked_versions(path).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != locked:
            found.append(f"{name} installed {installed}, locked {locked}")
    return found


def lock_text(path=None) -> str:
    """For provenance: which lock, its hash, and whether the running environment matches it."""
    path = Path(path) if path else lock_file()
    if not path.is_file():
        return f"no lock file for Python {sys.version_info[0]}.{sys.version_info[1]} (environment not locked)"
    differences = environment_differences(path)
    state = ("environment matches it" if not differences else
             f"environment differs from it in {len(differences)} package(s), e.g. {differences[0]}")
    return f"lock `{path.name}` sha256 `{lock_hash(path)}`, {state}"


def declared_requirements(pyproject=None) -> list:
    """pyproject.toml's dependencies plus its test extra, as written there."""
    project = tomllib.loads(Path(pyproject or REPO_ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project.get("optional-dependencies", {}).get("test", [])


def requirement_name(requirement: str) -> str:
    """The package name of a requirement string such as 'jupyter-book>=1.0.4,<2'."""
    return normalize(re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0])


def environment_yml(lock, pyproject=None) -> str:
    """environment.yml for conda users: pyproject's packages at the versions the lock pins."""
    pins = locked_versions(lock)
    lines = ["# Conda environment for cxr-book, written by `make lock`: pyproject.toml's packages at the versions",
             f"# of {Path(lock).name} (a test checks that they agree). The exact environment, with every",
             "# dependency's version and hash: pip install --require-hashes --no-deps -r requirements/lock-py311.txt",
             "name: cxr-book", "channels:", "  - conda-forge", "dependencies:", "  - python=3.11", "  - pip",
             "  - pip:"]
    for requirement in declared_requirements(pyproject):
        name = requirement_name(requirement)
        if name not in pins:
            raise ValueError(f"{requirement!r} of pyproject.toml is not in {lock}; run `make lock`")
        lines.append(f"      - {name}=={pins[name]}")
    lines.append("      - -e .")
    return "\n".join(lines) + "\n"


def rebuild_command(chapter: str, profile: str, params: dict | None, data_dir=None, commit: str | None = None) -> str:
    """The shell command that reproduces a chapter's page: checkout of the commit, then `cxr run` with the parameters
    of every result the page reads (run_parameters); where no single run gives them, --from-page of the page."""
    words = (run_arguments(chapter, profile, params, data_dir) if params is not None
             else ["run", "--from-page", f"book/chapters/{chapter}.ipynb"])
    command = " ".join(shlex.quote(w) for w in [CXR, *words])
    if not commit or " " in commit:  # no git checkout to name
        return command
    clean = commit.removesuffix("-dirty")
    note = "  # this build also had uncommitted changes" if clean != commit else ""
    return f"git checkout {clean} && {command}{note}"


def run_arguments(chapter: str, profile: str, params: dict, data_dir=None) -> list:
    """`cxr run`'s arguments for one chapter: its profile, the data folder and each parameter as -p reads it back."""
    words = ["run", chapter, "--profile", profile] + (["--data", str(data_dir)] if data_dir else [])
    return words + [w for name, value in params.items() for w in ("-p", f"{name.lower()}={yaml_value(value)}")]


def yaml_value(value) -> str:
    """A parameter value as `-p` reads it back (YAML flow style, one line)."""
    import yaml  # here, not above: `make lock` runs this module where only uv is installed

    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


def run_parameters(chain: dict) -> dict | None:
    """The -p values under which `cxr run` gives every chapter of a chain (chapter -> the parameters it ran with,
    changed from the defaults) exactly those parameters; None where no single run does (chapters run alone)."""
    from cxrlib.core.manifest import takes

    chain = json.loads(json.dumps(chain))  # tuples as lists, as chapter.json holds them
    union = {name: value for changed in chain.values() for name, value in changed.items()}
    same = all({k: v for k, v in union.items() if takes(c, k)} == changed for c, changed in chain.items())
    return union if same else None


def changed_in_words(chain: dict, chapter: str) -> dict:
    """The parameters a page's results were made with, where they differ from the defaults: 'name' -> value where
    the chapter itself took it, 'name (chapters)' -> value where only results it reads did."""
    groups = {}
    for where, changed in chain.items():
        for name, value in changed.items():
            groups.setdefault((name, json.dumps(value)), (name, value, []))[2].append(where)
    return {name if chapter in where else f"{name} ({', '.join(where)})": value
            for name, value, where in groups.values()}


def changed_text(changed: dict) -> str:
    """Parameters as a page lists them: 'name=value, ...', or 'the defaults'."""
    return ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "the defaults"


def page_record(page) -> tuple:
    """(chapter, profile, data folder, chain) an executed page recorded: the runner's metadata.cxr (its chapter,
    and chapter -> parameters for every result it reads and its own), else papermill's parameters and input path."""
    import nbformat

    page = Path(page)
    if not page.is_file():
        raise RunnerError(f"page {page} does not exist; executed pages are in book/chapters/<chapter>.ipynb")
    metadata = nbformat.read(page, as_version=4).metadata
    papermill, recorded = metadata.get("papermill", {}), metadata.get("cxr", {})
    if "parameters" not in papermill:
        raise RunnerError(f"page {page} has no parameters recorded by papermill (metadata.papermill.parameters); "
                          f"it was not executed by `cxr run`")
    params = dict(papermill["parameters"])
    chapter = recorded.get("chapter") or Path(papermill.get("input_path") or "").stem
    if chapter not in CHAPTERS:
        raise RunnerError(f"page {page} names no chapter (metadata.cxr.chapter, papermill's input_path: "
                          f"{chapter!r}); chapters: {', '.join(CHAPTERS)}")
    profile, data_dir = params.pop("PROFILE", "cpu"), params.pop("DATA_DIR", None)
    if "changed" not in recorded:  # no chapter.json behind the page: papermill's parameters are all there is
        return chapter, profile, data_dir, {chapter: {k.lower(): v for k, v in params.items()}}
    chain = {**{c: read["changed"] or {} for c, read in recorded.get("reads", {}).items()}, chapter: recorded["changed"]}
    return chapter, profile, data_dir, {c: chain[c] for c in chapter_order([chapter]) if c in chain}


def main(argv=None) -> int:
    """`python -m cxrlib.machinery.repro environment-yml LOCK`: print environment.yml for that lock."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "environment-yml":
        print("usage: python -m cxrlib.machinery.repro environment-yml requirements/lock-py311.txt", file=sys.stderr)
        return 2
    sys.stdout.write(environment_yml(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
