"""Execute chapters with papermill in dependency order, stage their pages and results, skip unchanged ones."""
from __future__ import annotations

import ast
import fcntl
import graphlib
import json
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
from cxrlib.machinery.repro import changed_text, page_record, run_arguments, run_parameters
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
    # tuples (backbones, fractions) as lists: papermill writes a type it does not know, a tuple among them, as a string
    injected.update({k.upper(): json.loads(json.dumps(v)) for k, v in params.items() if takes(chapter, k)})
    return injected


# The data identities a `cxr run -j N` computed, handed to the child runs so that none loads the data again.
DATA_IDS_ENV = "CXR_DATA_IDS"


class Identities:
    """Chapter identities as the runner hands them to the chapters, loading each distinct data selection once (in
    the parent of a `-j` run: its children take the data identities it hands them)."""

    def __init__(self, profile: str, data_dir, log=None):
        self.profile, self.data_dir, self.done, self.asked, self.log = profile, data_dir, {}, {}, log
        self.loaded = json.loads(os.environ.get(DATA_IDS_ENV) or "{}")

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
        """A chapter's identity for these parameters (asked[chapter] keeps its settings, changes and parts)."""
        given = {k: v for k, v in injected.items() if k not in ("PROFILE", "DATA_DIR")}
        settings, changed = resolve_parameters(chapter, self.profile, given)
        notebook = identity.notebook_digest((notebooks_dir() / f"{chapter}.ipynb").read_bytes())
        parts = identity.chapter_parts(chapter, notebook, settings, self.data_id(settings),
                                       {d: self.done[d] for d in CHAPTERS[chapter]})
        self.asked[chapter] = json.loads(json.dumps({"settings": settings, "changed": changed, "parts": parts}))
        self.done[chapter] = identity.chapter_identity(parts)
        return self.done[chapter]


def why_run(chapter: str, info: dict, asked: dict) -> str:
    """Why a chapter runs, from its results in place (chapter.json) and what is asked: 'trained with
    learning_rate=0.001, asked for the default', 'fused's results changed', ..."""
    made = info.get("identity_parts")
    if not made:
        return "no results of it yet" if not info else "its results were made by an older cxr"
    verb, reasons = "trained" if takes(chapter, "epochs") else "made", []
    was, now = info.get("settings", {}), asked["settings"]
    for k in sorted(set(was) | set(now)):
        given_then, given_now = k in info.get("changed", {}), k in asked["changed"]
        if was.get(k) == now.get(k):
            continue
        if not (given_then or given_now):
            reasons.append(f"the default {k} changed from {was.get(k)!r} to {now.get(k)!r}")
            continue
        old = f"{k}={was.get(k)!r}" if given_then else f"the default {k}={was.get(k)!r}"
        reasons.append(f"{verb} with {old}, asked for {repr(now.get(k)) if given_now else 'the default'}")
    reasons += [f"{c}'s results changed" for c, made_id in asked["parts"]["upstream"].items()
                if made.get("upstream", {}).get(c) != made_id]
    reasons += [words for part, words in (("data", "the data changed"), ("notebook", "its notebook changed"),
                                          ("code", "cxrlib's code changed")) if made.get(part) != asked["parts"][part]]
    return "; ".join(reasons) or "its page is missing"


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


def execute(chapter: str, injected: dict, output: Path, log: Path, handed: str = "1") -> None:
    """Run one notebook with papermill; a failure names the chapter, its notebook and its kernel log."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    # the project's kernel (`make env` registers it), else 'python3' started as plain 'python': this interpreter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # after Ctrl-C, nbclient's abandoned tasks would log tracebacks at exit: the one-line message says it all
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    os.environ[RUNNER_ENV] = handed  # the kernel inherits it: its identity; the runner promotes results with the page
    try:
        with stderr_to(log):
            papermill.execute_notebook(str(notebooks_dir() / f"{chapter}.ipynb"), str(output), parameters=injected,
                                       kernel_name=kernel_name(), cwd=str(notebooks_dir()), progress_bar=False)
    finally:
        os.environ.pop(RUNNER_ENV, None)


class Pages:
    """Where a chapter's page and kernel log go: staged while it runs, then in place, kept or marked failed."""

    def __init__(self, chapter: str, profile: str, book_root: Path):
        self.chapter = chapter
        self.profile_dir = runs_dir() / profile
        self.run = runs.ChapterRun(profile, chapter, self.profile_dir.parent)
        self.page = Path(book_root) / "book" / "chapters" / f"{chapter}.ipynb"
        self.stamp = self.page.with_suffix(".stamp")
        self.staged_page = self.profile_dir / ".staging" / f"{chapter}.ipynb"
        self.staged_log = self.profile_dir / ".staging" / f"{chapter}.log"
        self.log = self.profile_dir / f"{chapter}.log"
        self.failed_page = self.page.with_name(f"{chapter}.failed.ipynb")
        self.failed_log = self.profile_dir / f"{chapter}.failed.log"

    def info(self) -> dict:
        """The chapter.json of the results in place ({} where none)."""
        return runs.read_json(self.run.live / "chapter.json")

    def up_to_date(self, stamp: str) -> bool:
        """Page, stamp and results in place, all made with this identity."""
        return (self.page.is_file() and self.stamp.is_file() and self.stamp.read_text() == stamp
                and self.info().get("identity") == stamp)

    def keep_page(self) -> None:
        """The page and log in place beside their results in the kept store (when they are that page)."""
        made = self.info().get("identity")
        if made and self.page.is_file() and self.stamp.is_file() and self.stamp.read_text() == made:
            self.run.kept(made).mkdir(parents=True, exist_ok=True)
            os.replace(self.page, self.run.kept(made) / "page.ipynb")
            if self.log.is_file():
                os.replace(self.log, self.run.kept(made) / "page.log")

    def promote(self, stamp: str, page: Path | None = None, log: Path | None = None, results=None) -> None:
        """Results, page, log and stamp into place (the staged ones, or those given), the results in place kept
        aside with their page; the stamp is written last."""
        self.keep_page()
        self.run.promote(results)
        self.page.parent.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        os.replace(page or self.staged_page, self.page)
        if (log or self.staged_log).is_file():
            os.replace(log or self.staged_log, self.log)
        self.stamp.write_text(stamp)
        for stale in (self.failed_page, self.failed_log):
            stale.unlink(missing_ok=True)

    def restore(self, stamp: str) -> bool:
        """Put back the results and page of this identity from the kept store, if they are there."""
        kept = self.run.kept(stamp)
        if not ((kept / "page.ipynb").is_file() and (kept / "results" / "chapter.json").is_file()):
            return False
        self.promote(stamp, kept / "page.ipynb", kept / "page.log", kept / "results")
        shutil.rmtree(kept, ignore_errors=True)
        return True

    def record(self) -> None:
        """What made the staged page, in its metadata (metadata.cxr): its chapter, identity, own changed parameters
        and every result it read, so --from-page rebuilds exactly it and `cxr book` sees when it went stale."""
        info = runs.read_json(self.run.staging / "chapter.json")
        notebook = json.loads(self.staged_page.read_text())
        notebook["metadata"]["cxr"] = {"chapter": self.chapter, **{k: info[k] for k in ("identity", "changed", "reads")
                                                                   if k in info}}
        runs.write_atomic(self.staged_page, lambda tmp: tmp.write_text(json.dumps(notebook, indent=1, ensure_ascii=False)))

    def keep_failed(self) -> None:
        """The failed notebook and log beside the good ones, under names that say so."""
        self.page.parent.mkdir(parents=True, exist_ok=True)
        for staged, failed in ((self.staged_page, self.failed_page), (self.staged_log, self.failed_log)):
            if staged.is_file():
                os.replace(staged, failed)
        shutil.rmtree(self.profile_dir / ".staging" / self.chapter, ignore_errors=True)


def run_one(chapter: str, injected: dict, stamp: str, pages: Pages, handed: str = "1") -> None:
    """Execute into staging; promote on success; on failure or Ctrl-C keep the last good results untouched."""
    import papermill

    kept = "the previous results and page are untouched" if pages.page.is_file() else "nothing was published"
    try:
        execute(chapter, injected, pages.staged_page, pages.staged_log, handed)
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
    pages.record()
    pages.promote(stamp)


def record_time(profile: str, chapter: str, seconds: float) -> None:
    """Each chapter's last running time, for the build page (locked: `-j` children finish at once)."""
    path = runs_dir() / profile / "timings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs.write_json(path, {**runs.read_json(path), chapter: round(seconds, 1)})


def outcome_file(profile: str, chapter: str) -> Path:
    """Where a run says what it did with a chapter (ran, restored, up to date), for the `-j` scheduler."""
    return runs_dir() / profile / ".outcomes" / f"{chapter}.json"


def run_chapters(names=None, profile: str = "cpu", data_dir=None, params=None, force: bool = False,
                 book_root: Path = REPO_ROOT, log=print, jobs: int = 1, only: bool = False) -> list:
    """Execute the chapters (and their dependencies) that are out of date; return those executed.

    A chapter whose results of exactly this identity were kept (runs.KEPT) is put back, not executed. jobs > 1
    runs chapters whose dependencies are done at once, each in a process of its own (on a GPU of its own where
    there are several); only=True runs exactly the named chapters, trusting their dependencies' results in place.
    """
    profile_settings(profile)
    order = list(names) if only else chapter_order(names)
    params = check_parameters(params or {}, order)
    ids = Identities(profile, data_dir, log)
    if only:
        ids.done.update({c: info.get("identity") for c, info in runs.chapter_infos(profile).items()})
    injected = {chapter: injected_parameters(chapter, profile, data_dir, params) for chapter in order}
    for chapter in order:
        chapter_identity(ids, chapter, injected[chapter])
    if jobs > 1:
        return run_parallel(order, profile, data_dir, params, force, book_root, jobs, log, ids.loaded)
    executed, started_all = [], time.perf_counter()
    for chapter in order:
        stamp = ids.done[chapter]
        pages, started = Pages(chapter, profile, book_root), time.perf_counter()
        if not force and pages.up_to_date(stamp):
            outcome, why = "up to date", "skipped (use --force to run it anyway)"
        elif not force and pages.restore(stamp):
            outcome, why = "restored", "its results and page of exactly these parameters were kept: put back, not run"
        else:
            reason = "--force" if force else why_run(chapter, pages.info(), ids.asked[chapter])
            log(f"- {chapter}: running ({reason}) with {injected[chapter]} ...")
            handed = {"chapter": chapter, "identity": stamp, "parts": ids.asked[chapter]["parts"]}
            run_one(chapter, injected[chapter], stamp, pages, json.dumps(handed))
            executed.append(chapter)
            record_time(profile, chapter, time.perf_counter() - started)
            outcome, why = "ran", f"{reason}; done in {time.perf_counter() - started:.0f}s -> {pages.page}"
        log(f"- {chapter}: {outcome}, {why}" if outcome != "ran" else f"  {why.split('; ')[-1]}")
        runs.write_json(outcome_file(profile, chapter), {"outcome": outcome, "why": why})
    log(f"{len(executed)} chapter(s) run, {len(order) - len(executed)} up to date or restored, "
        f"{time.perf_counter() - started_all:.0f}s in all")
    return executed


def chapter_identity(ids: Identities, chapter: str, injected: dict) -> str:
    """A chapter's identity, every chapter's before any runs: a parameter or the data that fails its check stops
    the run at the door, naming the chapter."""
    try:
        return ids.of(chapter, injected)
    except (ParameterError, DataError) as err:
        raise RunnerError(f"chapter '{chapter}': {err}") from None


def chapter_command(chapter: str, profile: str, data_dir, params: dict, force: bool, book_root: Path) -> list:
    """The `cxr run` of one chapter alone, as a child process of `cxr run -j N` runs it."""
    taken = {name: value for name, value in params.items() if takes(chapter, name)}
    return [sys.executable, "-m", "cxrlib.machinery.cli", *run_arguments(chapter, profile, taken, data_dir), "--only",
            "--book-root", str(book_root), *(["--force"] if force else [])]


def start_chapter(chapter: str, slot: int, gpus: list, command: list, profile: str, log,
                  data_ids: dict) -> subprocess.Popen:
    """One chapter in a process of its own, on GPU slot (modulo the GPUs) where there are GPUs, with the data
    identities computed for it; its output goes to a file beside the outcome it writes."""
    env = {**os.environ, DATA_IDS_ENV: json.dumps(data_ids)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    log(f"- {chapter}: started" + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""))
    outcome = outcome_file(profile, chapter)
    outcome.unlink(missing_ok=True)
    outcome.parent.mkdir(parents=True, exist_ok=True)
    with open(outcome.with_suffix(".out"), "w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def finished(chapter: str, process: subprocess.Popen, profile: str) -> dict:
    """What a child did with its chapter: its exit status, then the outcome file it wrote; a failure's message is
    the last line of its output."""
    outcome = outcome_file(profile, chapter)
    if process.returncode:
        lines = outcome.with_suffix(".out").read_text(errors="replace").strip().splitlines()
        return {"outcome": "failed", "why": lines[-1] if lines else f"exit status {process.returncode}"}
    return runs.read_json(outcome) or {"outcome": "failed", "why": f"it wrote no outcome ({outcome})"}


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
                 log=print, data_ids=None) -> list:
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
            running[chapter] = (start_chapter(chapter, slot, gpus, command, profile, log, data_ids or {}), slot)
            started.append(chapter)
        wait_a_moment(running)
        for chapter, (process, _) in list(running.items()):
            if process.poll() is None:
                continue
            del running[chapter]
            result = finished(chapter, process, profile)
            if result["outcome"] == "failed":
                failed.append(f"{chapter}: {result['why']}")
                continue
            sorter.done(chapter)
            executed += [chapter] if result["outcome"] == "ran" else []
            log(f"  {chapter}: {result['outcome']}, {result['why']}")
    if failed:
        pending = [c for c in order if c not in started]
        raise RunnerError("; ".join(failed) + (f"; not started: {', '.join(pending)}" if pending else ""))
    return [c for c in order if c in executed]


def rerun_from_page(page, force: bool = False, book_root=REPO_ROOT, log=print) -> list:
    """Run a page's chapter again with the profile, data folder and parameters its page recorded, those of the
    results it read included; chapters that ran alone with parameters of their own are run so again, in order."""
    chapter, profile, data_dir, chain = page_record(page)
    params = run_parameters(chain)
    log(f"- {chapter}: from {page}: profile {profile}, data {data_dir or 'default'}, parameters "
        f"{'; '.join(f'{c}: {changed_text(p)}' for c, p in chain.items() if p) or 'the defaults'}")
    if params is not None:
        return run_chapters([chapter], profile, data_dir, params, force, book_root=book_root, log=log)
    return [c for c, p in chain.items()
            for c in run_chapters([c], profile, data_dir, p, force and c == chapter, book_root, log, only=True)]
