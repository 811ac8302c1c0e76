"""Execute chapters with papermill in dependency order, stage their pages and results, skip unchanged ones."""
from __future__ import annotations

import ast
import graphlib
import logging
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from cxrlib.core.config import REPO_ROOT, notebooks_dir, runs_dir
from cxrlib.core.errors import DataError
from cxrlib.core.manifest import CHAPTERS, ParameterError, RunnerError, chapter_order  # noqa: F401  (the CLI's own names)
from cxrlib.core.manifest import check, profile_settings, resolve_parameters, takes
from cxrlib.machinery import identity, runs
from cxrlib.machinery.browse import kernel_name
from cxrlib.machinery.parallel import visible_gpus
from cxrlib.machinery.repro import page_parameters, run_arguments
from cxrlib.machinery.runs import RUNNER_ENV


def parameters_cell(chapter: str) -> dict:
    """The names and defaults of a notebook's cell tagged 'parameters', as papermill reads them."""
    import papermill

    found = papermill.inspect_notebook(str(notebooks_dir() / f"{chapter}.ipynb"))
    if not found:
        raise RunnerError(f"notebook {chapter}.ipynb has no cell tagged 'parameters'")
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def check_parameters(params: dict, order: list) -> dict:
    """Every -p value checked against the table before any data is read: name, value, what is allowed."""
    checked = {}
    for name, value in params.items():
        try:
            checked[name.lower()] = check(name, value)
        except ParameterError as err:
            raise RunnerError(str(err)) from None
        if not any(takes(c, name) for c in order):
            raise RunnerError(f"no chapter among {', '.join(order)} has a parameter {name.lower()}")
    return checked


def injected_parameters(chapter: str, profile: str, data_dir, params: dict) -> dict:
    """What papermill injects: the profile, the data folder, and the user's parameters this chapter takes."""
    from cxrlib.machinery.inputs.sources import SYNTHETIC, is_synthetic

    injected = {"PROFILE": profile}
    if data_dir:
        injected["DATA_DIR"] = SYNTHETIC if is_synthetic(data_dir) else str(Path(data_dir).expanduser().resolve())
    injected.update({k.upper(): as_literal(v) for k, v in params.items() if takes(chapter, k)})
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
        import cxrlib.machinery.inputs

        key = identity.digest({k: settings.get(k) for k in (*identity.DATA_SETTINGS, "min_per_split")})
        if key not in self.loaded:
            data = cxrlib.machinery.inputs.load_for(self.data_dir, settings)
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
    runs.write_json(path, {**runs.read_json(path), chapter: round(seconds, 1)})


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
        injected = injected_parameters(chapter, profile, data_dir, params)
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


def chapter_command(chapter: str, profile: str, data_dir, params: dict, force: bool, book_root: Path) -> list:
    """The `cxr run` of one chapter alone, as a child process of `cxr run -j N` runs it."""
    taken = {name: value for name, value in params.items() if takes(chapter, name)}
    return [sys.executable, "-m", "cxrlib.machinery.cli", *run_arguments(chapter, profile, taken, data_dir), "--only",
            "--book-root", str(book_root), *(["--force"] if force else [])]


def start_chapter(chapter: str, slot: int, gpus: list, command: list, log) -> subprocess.Popen:
    """One chapter in a process of its own, on GPU slot (modulo the GPUs) where there are GPUs."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    log(f"- {chapter}: started" + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_a_moment(running: dict) -> None:
    """Half a second between polls; Ctrl-C lets the running chapters stop cleanly, then says what happened."""
    try:
        time.sleep(0.5)
    except KeyboardInterrupt:
        for process, _ in running.values():
            process.wait()
        raise Interrupted(f"interrupted chapter(s) {', '.join(running)}; the previous results and pages are "
                          f"untouched; the next run resumes their training from the last finished epoch") from None


def run_parallel(order: list, profile: str, data_dir, params: dict, force: bool, book_root: Path, jobs: int,
                 log=print) -> list:
    """Start each chapter once the chapters it reads are done (graphlib), at most `jobs` at a time, one GPU each."""
    gpus, running, started, executed, failed, ready = visible_gpus(), {}, [], [], [], []
    sorter = graphlib.TopologicalSorter({c: [d for d in CHAPTERS[c] if d in order] for c in order})
    sorter.prepare()
    while sorter.is_active() and not (failed and not running):
        ready += sorted(sorter.get_ready(), key=order.index)
        while ready and len(running) < jobs and not failed:
            chapter = ready.pop(0)
            slot = next(k for k in range(jobs) if k not in {s for _, s in running.values()})
            command = chapter_command(chapter, profile, data_dir, params, force, book_root)
            running[chapter] = (start_chapter(chapter, slot, gpus, command, log), slot)
            started.append(chapter)
        wait_a_moment(running)
        for chapter, (process, _) in list(running.items()):
            if process.poll() is None:
                continue
            del running[chapter]
            output = process.stdout.read().strip()
            if process.returncode:
                failed.append(f"{chapter}: {output.splitlines()[-1] if output else process.returncode}")
                continue
            sorter.done(chapter)
            executed += [chapter] if "1 chapter(s) run" in output else []
            log(f"  {chapter}: " + (output.splitlines()[-2] if "done in" in output else "up to date, skipped"))
    if failed:
        pending = [c for c in order if c not in started]
        raise RunnerError("; ".join(failed) + (f"; not started: {', '.join(pending)}" if pending else ""))
    return [c for c in order if c in executed]


def rerun_from_page(page, force: bool = False, book_root=REPO_ROOT, log=print) -> list:
    """Run a chapter again with the profile, data folder and parameters recorded in its executed page."""
    chapter, params = page_parameters(page)
    profile = params.pop("PROFILE", "cpu")
    data_dir = params.pop("DATA_DIR", None)
    log(f"- {chapter}: parameters from {page}: profile {profile}, data {data_dir or 'default'}, {params or 'no others'}")
    return run_chapters([chapter], profile, data_dir, params, force, book_root=book_root, log=log)
