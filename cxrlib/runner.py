"""`cxr`: execute chapters with papermill in dependency order, skip unchanged ones, build the book.

    cxr run [CHAPTER ...] [--profile P] [--data PATH] [-p name=value ...] [--force]
    cxr book
    cxr list
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from cxrlib.config import REPO_ROOT, profile_settings, runs_dir

NOTEBOOKS = REPO_ROOT / "notebooks"
# chapter -> chapters whose results it reads; dict order is the book's (the report's) order
CHAPTERS = {
    "dataset": (),
    "preprocessing": ("scratch", "fused_grid"),
    "resizer": ("fused", "fused_grid"),
    "scratch": (),
    "hyperband": ("scratch",),
    "fused": (),
    "fused_grid": ("fused",),
    "pretrained": (),
    "error_analysis": ("scratch", "fused", "pretrained"),
    "explainability": ("scratch", "fused", "pretrained"),
    "ensemble": ("scratch", "fused", "pretrained"),
    "conclusions": ("preprocessing", "resizer", "hyperband", "fused_grid", "ensemble"),
}


class RunnerError(RuntimeError):
    """A problem the user can fix: unknown chapter or parameter, failed chapter, missing pages."""


def chapter_order(names=None) -> list:
    """The requested chapters plus everything they depend on: dependencies first, else book order."""
    for name in names or ():
        if name not in CHAPTERS:
            raise RunnerError(f"unknown chapter {name!r}; chapters: {', '.join(CHAPTERS)}")
    order: list = []

    def visit(chapter):
        if chapter not in order:
            for dependency in CHAPTERS[chapter]:
                visit(dependency)
            order.append(chapter)

    for name in [c for c in CHAPTERS if c in set(names or CHAPTERS)]:
        visit(name)
    return order


def parse_assignments(pairs) -> dict:
    """-p name=value pairs; values are read as YAML so numbers, booleans and lists keep their type."""
    params = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise RunnerError(f"parameter {pair!r} is not of the form name=value")
        params[name.strip().upper()] = parse_value(value)
    return params


def parse_value(text: str):
    """YAML, plus the float forms YAML 1.1 reads as strings (1e-4)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def notebook_parameters(chapter: str) -> dict:
    """The names and defaults in a notebook's cell tagged 'parameters'."""
    import nbformat

    notebook = nbformat.read(NOTEBOOKS / f"{chapter}.ipynb", as_version=4)
    for cell in notebook.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            scope: dict = {}
            exec(cell.source, scope)  # the cell holds plain assignments of literals
            return {k: v for k, v in scope.items() if not k.startswith("__")}
    raise RunnerError(f"notebook {chapter}.ipynb has no cell tagged 'parameters'")


def chapter_parameters(chapter: str, profile: str, data_dir, params: dict) -> dict:
    """What papermill injects: the profile, the data folder, and the user's parameters this chapter has."""
    known = notebook_parameters(chapter)
    injected = {"PROFILE": profile}
    if data_dir:
        injected["DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    injected.update({k: v for k, v in params.items() if k in known})
    return injected


def code_digest() -> str:
    """Changes whenever the library changes, so chapters re-run after a code change."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "cxrlib").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chapter_stamp(chapter: str, injected: dict, data_fingerprint: str, upstream: list) -> str:
    """A hash of everything a chapter's output depends on."""
    digest = hashlib.sha256((NOTEBOOKS / f"{chapter}.ipynb").read_bytes())
    digest.update(json.dumps([injected, data_fingerprint, code_digest(), upstream], sort_keys=True,
                             default=str).encode())
    return digest.hexdigest()


@contextmanager
def stderr_to(path: Path):
    """Send this process's and its children's stderr (TensorFlow's C++ start-up log) to a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def execute(chapter: str, injected: dict, output: Path, log: Path) -> None:
    """Run one notebook with papermill; a failure names the chapter, its notebook and its kernel log."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    # the kernel is started as plain 'python': make sure that is this environment's interpreter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        with stderr_to(log):
            papermill.execute_notebook(str(NOTEBOOKS / f"{chapter}.ipynb"), str(output), parameters=injected,
                                       kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
    except papermill.PapermillExecutionError as err:
        raise RunnerError(f"chapter '{chapter}' failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                          f"the executed notebook, with the error, is {output}; the kernel's log is {log}") from None


def run_chapters(names=None, profile: str = "cpu", data_dir=None, params=None, force: bool = False,
                 book_root: Path = REPO_ROOT, log=print) -> list:
    """Execute the chapters (and their dependencies) that are out of date; return those executed."""
    from cxrlib.data import resolve_source

    profile_settings(profile)
    params = {k.upper(): v for k, v in (params or {}).items()}
    order = chapter_order(names)
    for name in params:
        if not any(name in notebook_parameters(c) for c in order):
            raise RunnerError(f"no chapter among {', '.join(order)} has a parameter {name}")
    fingerprint = resolve_source(data_dir).fingerprint()
    stamps, executed = {}, []
    for chapter in order:
        injected = chapter_parameters(chapter, profile, data_dir, params)
        stamp = chapter_stamp(chapter, injected, fingerprint, [stamps[d] for d in CHAPTERS[chapter]])
        stamps[chapter] = stamp
        output = Path(book_root) / "book" / "chapters" / f"{chapter}.ipynb"
        stamp_file = output.with_suffix(".stamp")
        results = runs_dir() / profile / chapter / "chapter.json"
        if (not force and output.is_file() and results.is_file() and stamp_file.is_file()
                and stamp_file.read_text() == stamp):
            log(f"- {chapter}: up to date, skipped (use --force to run it anyway)")
            continue
        log(f"- {chapter}: running with {injected} ...")
        started = time.perf_counter()
        stamp_file.unlink(missing_ok=True)
        execute(chapter, injected, output, runs_dir() / profile / f"{chapter}.log")
        stamp_file.write_text(stamp)
        executed.append(chapter)
        log(f"  done in {time.perf_counter() - started:.0f}s -> {output}")
    return executed


def toc_files(book_root: Path = REPO_ROOT) -> list:
    """The pages the table of contents names."""
    toc = yaml.safe_load((Path(book_root) / "_toc.yml").read_text())
    entries = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        entries += [c["file"] for c in part.get("chapters", [])]
    return entries


def build_book(book_root: Path = REPO_ROOT, log=print) -> Path:
    """Build the HTML book from the executed chapters; say which chapters are missing first."""
    book_root = Path(book_root)
    missing = [f for f in toc_files(book_root)
               if not any((book_root / f"{f}{ext}").is_file() for ext in (".ipynb", ".md"))]
    if missing:
        raise RunnerError(f"pages not built yet: {', '.join(missing)}; run `cxr run` first")
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book_root)]
    log("$ " + " ".join(command))
    done = subprocess.run(command, cwd=book_root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RunnerError(f"jupyter-book failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    html = book_root / "_build" / "html" / "index.html"
    log(f"book built: {html}")
    return html


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(CHAPTERS)})")
    run.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help="smoke, cpu or full")
    run.add_argument("--data", default=os.environ.get("CXR_DATA_DIR"), help="an NIH ChestX-ray14 folder")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a notebook parameter")
    run.add_argument("--force", action="store_true", help="run even when nothing changed")
    sub.add_parser("book", help="build the HTML book into _build/html")
    sub.add_parser("list", help="list the chapters and their parameters")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_chapters(args.chapters, args.profile, args.data, parse_assignments(args.param), args.force)
        elif args.command == "book":
            build_book()
        else:
            for chapter in CHAPTERS:
                print(f"{chapter}: {notebook_parameters(chapter)}")
    except (RunnerError, ValueError) as err:
        print(f"cxr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
