"""`cxr`: execute chapters with papermill in dependency order, skip unchanged ones, build the book.

    cxr run [CHAPTER ...] [--profile P] [--data PATH] [-p name=value ...] [--force] [-j N] [--tuner-workers N]
    cxr run --from-page book/chapters/CHAPTER.ipynb [--force]
    cxr compare RUNS_A RUNS_B
    cxr book
    cxr list
    cxr predict PATH ... --model CHAPTER/MODEL [--profile P] [-o CSV] [--gradcam DIR]
    cxr browse [--profile P] [--port N] [--token T] [--lab] [--open]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from cxrlib import identity, runs
from cxrlib.config import REPO_ROOT, notebooks_dir, profile_settings, runs_dir
from cxrlib.data.errors import DataError
from cxrlib.params import PARAMETERS, ParameterError, check, resolve_parameters
from cxrlib.registry import CHAPTERS, RunnerError, chapter_order  # noqa: F401  (the CLI's own names)
from cxrlib.predict import add_parser as predict_parser
from cxrlib.runs import RUNNER_ENV

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

    notebook = nbformat.read(notebooks_dir() / f"{chapter}.ipynb", as_version=4)
    for cell in notebook.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            scope: dict = {}
            exec(cell.source, scope)  # the cell holds plain assignments of literals
            return {k: v for k, v in scope.items() if not k.startswith("__")}
    raise RunnerError(f"notebook {chapter}.ipynb has no cell tagged 'parameters'")


def check_parameters(params: dict, order: list) -> dict:
    """Every -p value checked against the table before any data is read: name, value, what is allowed."""
    checked = {}
    for name, value in params.items():
        try:
            checked[name.lower()] = check(name, value)
        except ParameterError as err:
            raise RunnerError(str(err)) from None
        if not any(PARAMETERS[name.lower()].takes(c) for c in order):
            raise RunnerError(f"no chapter among {', '.join(order)} has a parameter {name.lower()}")
    return checked


def chapter_parameters(chapter: str, profile: str, data_dir, params: dict) -> dict:
    """What papermill injects: the profile, the data folder, and the user's parameters this chapter takes."""
    from cxrlib.data.sources import SYNTHETIC, is_synthetic

    injected = {"PROFILE": profile}
    if data_dir:
        injected["DATA_DIR"] = SYNTHETIC if is_synthetic(data_dir) else str(Path(data_dir).expanduser().resolve())
    injected.update({k.upper(): as_literal(v) for k, v in params.items() if PARAMETERS[k.lower()].takes(chapter)})
    return injected


def as_literal(value):
    """A checked value as papermill can write it into the notebook: tuples (backbones, fractions) as lists, since
    papermill writes a type it does not know, a tuple among them, as its string."""
    if isinstance(value, (tuple, list)):
        return [as_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: as_literal(v) for k, v in value.items()}
    return value


class Identities:
    """Chapter identities as the chapters compute them, loading each distinct data selection once."""

    def __init__(self, profile: str, data_dir, log=None):
        self.profile, self.data_dir, self.loaded, self.done, self.log = profile, data_dir, {}, {}, log

    def data_id(self, settings: dict) -> str:
        """The data identity for these settings (the split and image contents), cached per selection."""
        import cxrlib.data

        key = identity.digest({k: settings.get(k) for k in (*identity.DATA_SETTINGS, "min_per_split")})
        if key not in self.loaded:
            data = cxrlib.data.load_for(self.data_dir, settings)
            self.loaded[key] = identity.data_identity(data, settings)
            if self.log and len(self.loaded) == 1:
                self.log(f"data: {data.source.describe()}; {data.drops.line()}")
        return self.loaded[key]

    def of(self, chapter: str, injected: dict) -> str:
        """What Chapter.chapter_identity() will compute inside the notebook for these parameters."""
        given = {k: v for k, v in injected.items() if k not in ("PROFILE", "DATA_DIR")}
        settings, _ = resolve_parameters(chapter, self.profile, given)
        upstream = [self.done[d] for d in CHAPTERS[chapter]]
        notebook = (notebooks_dir() / f"{chapter}.ipynb").read_bytes()
        self.done[chapter] = identity.chapter_identity(chapter, notebook, settings, self.data_id(settings),
                                                       upstream)
        return self.done[chapter]


def chapter_stamp(chapter: str, injected: dict, profile: str = "cpu", data_dir=None, upstream=None) -> str:
    """A chapter's identity for these parameters (upstream: {chapter: identity} of its dependencies)."""
    ids = Identities(profile, data_dir)
    ids.done.update(upstream or {})
    for dependency in CHAPTERS[chapter]:
        ids.done.setdefault(dependency, runs.chapter_infos(profile).get(dependency, {}).get("identity"))
    return ids.of(chapter, injected)


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


class Interrupted(RunnerError):
    """Ctrl-C during a chapter."""


def execute(chapter: str, injected: dict, output: Path, log: Path) -> None:
    """Run one notebook with papermill; a failure names the chapter, its notebook and its kernel log."""
    import papermill

    from cxrlib.browse import kernel_name

    output.parent.mkdir(parents=True, exist_ok=True)
    # the project's kernel (`make env` registers it), else 'python3' started as plain 'python': this interpreter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # after Ctrl-C, nbclient's abandoned tasks would log tracebacks at exit: the one-line message says it all
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    os.environ[RUNNER_ENV] = "1"  # the kernel inherits it: the runner promotes results with the page
    try:
        with stderr_to(log):
            papermill.execute_notebook(str(notebooks_dir() / f"{chapter}.ipynb"), str(output), parameters=injected,
                                       kernel_name=kernel_name(), cwd=str(notebooks_dir()), progress_bar=False)
    finally:
        os.environ.pop(RUNNER_ENV, None)


class Pages:
    """Where a chapter's page and kernel log go: staged while it runs, then in place or marked failed."""

    def __init__(self, chapter: str, profile: str, book_root: Path):
        self.chapter = chapter
        self.profile_dir = runs_dir() / profile
        self.page = Path(book_root) / "book" / "chapters" / f"{chapter}.ipynb"
        self.stamp = self.page.with_suffix(".stamp")
        self.staged_page = self.profile_dir / ".staging" / f"{chapter}.ipynb"
        self.staged_log = self.profile_dir / ".staging" / f"{chapter}.log"
        self.log = self.profile_dir / f"{chapter}.log"
        self.failed_page = self.page.with_name(f"{chapter}.failed.ipynb")
        self.failed_log = self.profile_dir / f"{chapter}.failed.log"

    def up_to_date(self, stamp: str) -> bool:
        """Page, stamp and results in place, all made with this identity."""
        info = runs.chapter_infos(self.profile_dir.name, self.profile_dir.parent).get(self.chapter, {})
        return (self.page.is_file() and self.stamp.is_file() and self.stamp.read_text() == stamp
                and info.get("identity") == stamp)

    def promote(self, stamp: str) -> None:
        """Results, page, log and stamp into place, the results first (the stamp is written last)."""
        runs.ChapterRun(self.profile_dir.name, self.chapter, self.profile_dir.parent).promote()
        self.page.parent.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        os.replace(self.staged_page, self.page)
        if self.staged_log.is_file():
            os.replace(self.staged_log, self.log)
        self.stamp.write_text(stamp)
        for stale in (self.failed_page, self.failed_log):
            stale.unlink(missing_ok=True)

    def keep_failed(self) -> None:
        """The failed notebook and log beside the good ones, under names that say so."""
        self.page.parent.mkdir(parents=True, exist_ok=True)
        for staged, failed in ((self.staged_page, self.failed_page), (self.staged_log, self.failed_log)):
            if staged.is_file():
                os.replace(staged, failed)
        shutil.rmtree(self.profile_dir / ".staging" / self.chapter, ignore_errors=True)


def run_one(chapter: str, injected: dict, stamp: str, pages: Pages) -> None:
    """Execute into staging; promote on success; on failure or Ctrl-C keep the last good results untouched."""
    import papermill

    kept = "the previous results and page are untouched" if pages.page.is_file() else "nothing was published"
    try:
        execute(chapter, injected, pages.staged_page, pages.staged_log)
    except KeyboardInterrupt:
        pages.keep_failed()
        raise Interrupted(f"interrupted chapter '{chapter}'; {kept}; the next run resumes its training "
                          f"from the last finished epoch") from None
    except papermill.PapermillExecutionError as err:
        pages.keep_failed()
        raise RunnerError(f"chapter '{chapter}' failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                          f"{kept}; the failed notebook is {pages.failed_page}, its kernel log "
                          f"{pages.failed_log}") from None
    except Exception as err:
        pages.keep_failed()
        raise RunnerError(f"chapter '{chapter}' could not run: {type(err).__name__}: {err}; {kept}") from None
    pages.promote(stamp)


def record_time(profile: str, chapter: str, seconds: float) -> None:
    """Each chapter's last running time, for the build page."""
    path = runs_dir() / profile / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[chapter] = round(seconds, 1)
    runs.write_json(path, timings)


def run_chapters(names=None, profile: str = "cpu", data_dir=None, params=None, force: bool = False,
                 book_root: Path = REPO_ROOT, log=print, jobs: int = 1, only: bool = False) -> list:
    """Execute the chapters (and their dependencies) that are out of date; return those executed.

    jobs > 1 runs chapters whose dependencies are done at once, each in a process of its own (on a GPU of
    its own where there are several); only=True runs exactly the named chapters, trusting their
    dependencies' results in place.
    """
    profile_settings(profile)
    order = list(names) if only else chapter_order(names)
    params = check_parameters(params or {}, order)
    if jobs > 1:
        return run_parallel(order, profile, data_dir, params, force, book_root, jobs, log)
    ids = Identities(profile, data_dir, log)
    if only:
        ids.done.update({c: info.get("identity") for c, info in runs.chapter_infos(profile).items()})
    executed, started_all = [], time.perf_counter()
    for chapter in order:
        injected = chapter_parameters(chapter, profile, data_dir, params)
        try:
            stamp = ids.of(chapter, injected)
        except (ParameterError, DataError) as err:
            raise RunnerError(f"chapter '{chapter}': {err}") from None
        pages = Pages(chapter, profile, book_root)
        if not force and pages.up_to_date(stamp):
            log(f"- {chapter}: up to date, skipped (use --force to run it anyway)")
            continue
        log(f"- {chapter}: running with {injected} ...")
        started = time.perf_counter()
        run_one(chapter, injected, stamp, pages)
        executed.append(chapter)
        record_time(profile, chapter, time.perf_counter() - started)
        log(f"  done in {time.perf_counter() - started:.0f}s -> {pages.page}")
    log(f"{len(executed)} chapter(s) run, {len(order) - len(executed)} up to date, "
        f"{time.perf_counter() - started_all:.0f}s in all")
    return executed


def visible_gpus() -> list:
    """The GPU indices a chapter process may be given (CUDA_VISIBLE_DEVICES, else nvidia-smi's list)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g for g in given.split(",") if g.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(k) for k, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def chapter_command(chapter: str, profile: str, data_dir, params: dict, force: bool, book_root: Path) -> list:
    """The `cxr run` of one chapter alone, as a child process of `cxr run -j N` runs it."""
    from cxrlib.repro import yaml_value

    command = [sys.executable, "-m", "cxrlib.runner", "run", chapter, "--only", "--profile", profile,
               "--book-root", str(book_root)]
    command += ["--data", str(data_dir)] if data_dir else []
    for name, value in params.items():
        if PARAMETERS[name].takes(chapter):
            command += ["-p", f"{name}={yaml_value(value)}"]
    return command + (["--force"] if force else [])


def run_parallel(order: list, profile: str, data_dir, params: dict, force: bool, book_root: Path, jobs: int,
                 log=print) -> list:
    """Start each chapter once its dependencies are done, at most `jobs` at a time, one GPU each."""
    gpus, pending, running, done, executed, failed = visible_gpus(), list(order), {}, set(), [], []
    while pending or running:
        ready = [c for c in pending if set(CHAPTERS[c]) & set(order) <= done]
        while ready and len(running) < jobs and not failed:
            chapter = ready.pop(0)
            pending.remove(chapter)
            slot = next(k for k in range(jobs) if k not in {s for _, s in running.values()})
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            log(f"- {chapter}: started" + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
            running[chapter] = (subprocess.Popen(chapter_command(chapter, profile, data_dir, params, force, book_root),
                                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                                slot)
        if failed and not running:
            break
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            for process, _ in running.values():
                process.wait()
            raise Interrupted(f"interrupted chapter(s) {', '.join(running)}; the previous results and pages are "
                              f"untouched; the next run resumes their training from the last finished epoch") from None
        for chapter, (process, _) in list(running.items()):
            if process.poll() is None:
                continue
            del running[chapter]
            output = process.stdout.read().strip()
            if process.returncode:
                failed.append(f"{chapter}: {output.splitlines()[-1] if output else process.returncode}")
                continue
            done.add(chapter)
            executed += [chapter] if "1 chapter(s) run" in output else []
            log(f"  {chapter}: " + (output.splitlines()[-2] if "done in" in output else "up to date, skipped"))
    if failed:
        raise RunnerError("; ".join(failed) + (f"; not started: {', '.join(pending)}" if pending else ""))
    return [c for c in order if c in executed]


def toc_files(book_root: Path = REPO_ROOT) -> list:
    """The pages the table of contents names."""
    toc = yaml.safe_load((Path(book_root) / "_toc.yml").read_text())
    entries = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        entries += [c["file"] for c in part.get("chapters", [])]
    return entries


def build_book(book_root: Path = REPO_ROOT, log=print) -> Path:
    """Build the HTML book from the executed chapters; say which chapters are missing first."""
    from cxrlib import book

    book_root = Path(book_root)
    book.prepare_pages(book_root)  # the build page, injected-parameters cells hidden, no widget state
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
    book.clean_site(html.parent)  # no source maps or notebook copies in the published site
    log(f"book built: {html}")
    return html


def parameter_listing() -> str:
    """`cxr list`: every parameter with its type, allowed values, default per profile and chapters."""
    from cxrlib.params import table

    lines = ["Parameters (cxr run CHAPTER -p name=value); a chapter takes those that name it or 'all':", ""]
    for name, row in table(list(CHAPTERS)).iterrows():
        defaults = ", ".join(f"{column[9:-1]} {row[column]}" for column in row.index if column.startswith("default"))
        lines += [f"{name} ({row['type']}): {row['what']}",
                  f"    allowed: {row['allowed']}",
                  f"    default: {defaults}",
                  f"    chapters: {row['chapters']}"]
    return "\n".join(lines)


def rerun_from_page(page, force: bool = False, book_root=REPO_ROOT, log=print) -> list:
    """Run a chapter again with the profile, data folder and parameters recorded in its executed page."""
    from cxrlib.repro import page_parameters

    chapter, params = page_parameters(page)
    profile = params.pop("PROFILE", "cpu")
    data_dir = params.pop("DATA_DIR", None)
    log(f"- {chapter}: parameters from {page}: profile {profile}, data {data_dir or 'default'}, {params or 'no others'}")
    return run_chapters([chapter], profile, data_dir, params, force, book_root=book_root, log=log)


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(CHAPTERS)})")
    run.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help="smoke, cpu or full")
    run.add_argument("--data", default=os.environ.get("CXR_DATA_DIR"),
                     help="an NIH ChestX-ray14 folder, or 'synthetic' (default: the real sample shipped in data/)")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a notebook parameter")
    run.add_argument("--force", action="store_true", help="run even when nothing changed")
    run.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                     help="run up to N independent chapters at once, each on a GPU of its own where there are several")
    run.add_argument("--only", action="store_true", help=argparse.SUPPRESS)  # a -j child: this chapter alone
    run.add_argument("--book-root", default=str(REPO_ROOT), help=argparse.SUPPRESS)
    run.add_argument("--tuner-workers", type=int, metavar="N", help="Hyperband in keras-tuner's distributed mode: a "
                     "chief and one worker per visible GPU, or N CPU workers (the parameter tuner_workers)")
    run.add_argument("--from-page", metavar="PATH", help="re-run the chapter of an executed page with its recorded "
                     "parameters (book/chapters/<chapter>.ipynb); no chapter names or -p with it")
    compare = sub.add_parser("compare", help="metrics of two run folders side by side, and the largest difference")
    compare.add_argument("runs_a", metavar="RUNS_A", help="a run folder: runs/ or runs/<profile>")
    compare.add_argument("runs_b", metavar="RUNS_B", help="the other run folder")
    sub.add_parser("book", help="build the HTML book into _build/html")
    sub.add_parser("list", help="list the chapters and their parameters")
    predict_parser(sub)
    browse = sub.add_parser("browse", help="browse a profile's misclassified images in Voila (prints the address)")
    browse.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help="smoke, cpu or full")
    browse.add_argument("--port", type=int, default=0, help="default: a free port")
    browse.add_argument("--ip", default="127.0.0.1", help="the address to listen on")
    browse.add_argument("--token", help="default: a random token (it is part of the address printed)")
    browse.add_argument("--lab", action="store_true", help="JupyterLab on the notebooks instead of Voila's read-only view")
    browse.add_argument("--open", action="store_true", help="also open the address in a web browser")
    args = parser.parse_args(argv)
    try:
        if args.command == "run" and args.from_page:
            from cxrlib import repro

            if args.chapters or args.param:
                raise RunnerError(f"--from-page re-runs {args.from_page} with its own parameters; "
                                  f"drop the chapter names {args.chapters} and -p {args.param}")
            rerun_from_page(args.from_page, args.force)
        elif args.command == "run":
            params = parse_assignments(args.param)
            if args.tuner_workers is not None:
                params["TUNER_WORKERS"] = args.tuner_workers
            run_chapters(args.chapters, args.profile, args.data, params, args.force, Path(args.book_root),
                         jobs=args.jobs, only=args.only)
        elif args.command == "compare":
            from cxrlib import repro

            print(repro.compare_text(args.runs_a, args.runs_b))
        elif args.command == "book":
            build_book()
        elif args.command == "predict":
            from cxrlib import predict

            return predict.main(args)
        elif args.command == "browse":
            from cxrlib import browse

            browse.serve(args.profile, args.port, args.token, args.ip, args.lab, args.open)
        else:
            print(parameter_listing())
    except Interrupted as err:
        print(f"cxr: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("cxr: interrupted before any chapter ran; nothing was changed", file=sys.stderr)
        return 130
    except (RunnerError, ValueError, FileNotFoundError) as err:
        print(f"cxr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
