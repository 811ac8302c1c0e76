"""What the rendered book needs beyond the chapters: the index and build pages from the run folder, banners on
stale pages, and the few steps before and after jupyter-book that _config.yml cannot take (each says why)."""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import logging
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from cxrlib.core.config import CXR, REPO_ROOT, runs_dir
from cxrlib.core.manifest import PROFILES, REGISTRY, RunnerError
from cxrlib.machinery import runs
from cxrlib.machinery.repro import changed_text, page_record, rebuild_command, run_parameters
from cxrlib.present import book_pages
from cxrlib.present.labels import profile_in_words

LIBRARIES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "matplotlib", "jupyter-book")


def library_logs_to_stderr() -> None:
    """Send TensorFlow's Python log (which writes to stdout in an interactive kernel: 'WARNING:tensorflow:5 out
    of the last 9 calls ... retracing') to stderr: into the chapter's log, never into its page."""
    try:
        import tensorflow as tf

        logger = tf.get_logger()  # made on first use, with a stdout handler in a kernel: make it now, then move it
    except ImportError:
        logger = logging.getLogger("tensorflow")
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


# ---------------------------------------------------------------- the build page

def executed_profile(book_root: Path) -> str | None:
    """The profile the executed chapters were run with (papermill records the injected parameters)."""
    for path in sorted((Path(book_root) / "book" / "chapters").glob("*.ipynb")):
        parameters = json.loads(path.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
        if parameters.get("PROFILE"):
            return parameters["PROFILE"]
    return None


def library_versions() -> str:
    """Installed versions of the libraries that shape the numbers and the pages."""
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def headline_table(profile_dir: Path) -> pd.DataFrame:
    """Each family's best model as the conclusions chapter chose it on validation, with its test intervals and the
    report's row for it (the conclusions' saved table; empty where that chapter has not run)."""
    from cxrlib.machinery.analysis import FAMILIES_FILE

    path = Path(profile_dir) / "conclusions" / "tables" / FAMILIES_FILE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


SLOWEST_EXPLAINED = 3


def chapter_work(profile_dir: Path, chapter: str) -> str:
    """Why a chapter takes its time: what it computes, and the models and epochs its run folder holds."""
    histories = sorted((Path(profile_dir) / chapter / "histories").glob("*.csv"))
    epochs = sum(max(len(path.read_text().splitlines()) - 1, 0) for path in histories)
    trials = len(list((Path(profile_dir) / ".work" / chapter).glob("tuner/*/trial_*")))
    counted = [f"{len(histories)} model{'s' * (len(histories) != 1)} ({epochs} epochs in all)"] if histories else []
    counted += [f"{trials} Hyperband trial{'s' * (trials != 1)}"] if trials else []
    return "; ".join([REGISTRY[chapter].work if chapter in REGISTRY else "", *counted])


def timings_table(profile_dir: Path) -> pd.DataFrame:
    """How long each chapter took (the runner's timings.json), slowest first; the slowest say why."""
    path = profile_dir / "timings.json"
    if not path.is_file():
        return pd.DataFrame()
    seconds = json.loads(path.read_text())
    table = pd.DataFrame({"chapter": list(seconds), "seconds": [round(float(s)) for s in seconds.values()]})
    table = table.sort_values("seconds", ascending=False, kind="stable").reset_index(drop=True)
    table["why"] = [chapter_work(profile_dir, c) if k < SLOWEST_EXPLAINED else "" for k, c in enumerate(table["chapter"])]
    return pd.concat([table, pd.DataFrame([{"chapter": "all chapters", "seconds": int(table["seconds"].sum()),
                                            "why": ""}])], ignore_index=True)


def build_page(book_root: Path, runs_root: Path | None = None, today: str | None = None) -> str:
    """The build page's Markdown (book_pages.build_page), from the executed chapters and their run folder."""
    profile = executed_profile(book_root)
    if profile is None:
        return book_pages.empty_build_page()
    profile_dir = Path(runs_root or runs_dir()) / profile
    infos = runs.chapter_infos(profile_dir.name, profile_dir.parent)
    facts = {"folder": profile_dir, "built": today or _dt.date.today().isoformat(), "libraries": library_versions(),
             "commits": sorted({i.get("commit", "unknown") for i in infos.values()})}
    return book_pages.build_page(profile, next(iter(infos.values()), {}), PROFILES.get(profile, {}), facts,
                                 headline_table(profile_dir), timings_table(profile_dir))


def write_build_page(book_root: Path, runs_root: Path | None = None) -> Path:
    """book/build.md, regenerated at every build from the run folder."""
    page = build_page(book_root, runs_root)
    return runs.write_atomic(Path(book_root) / "book" / "build.md", lambda tmp: tmp.write_text(page))


# ---------------------------------------------------------------- the index page

def intro_page(book_root: Path, runs_root: Path | None = None) -> str:
    """book/intro.md: book/intro.template.md with its {{ name }} fields filled from the configuration and the build."""
    profile = executed_profile(book_root)
    first = next(iter(runs.chapter_infos(profile, runs_root).values()), {}) if profile else {}
    facts = {"profiles": book_pages.profile_table(PROFILES), "smoke_box": profile_in_words("smoke", PROFILES["smoke"]),
             "this_build": (f"This build ran the profile `{profile}` on the {first.get('data', 'unrecorded data')}."
                            if profile else "No chapter of this build has been executed yet.")}
    template = (Path(book_root) / "book" / "intro.template.md").read_text()
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: facts[m.group(1)], template)


# ---------------------------------------------------------------- pages that no longer match the results in place

STALE = "cxr-stale"  # the tag and id of the banner cell a stale page carries


def stale_reads(page: Path, infos: dict) -> list:
    """What a page read (its metadata.cxr, own results included) that the results in place no longer hold, in words."""
    recorded = json.loads(Path(page).read_text()).get("metadata", {}).get("cxr", {})
    reads = {**recorded.get("reads", {}), recorded.get("chapter"): recorded} if "identity" in recorded else {}
    words = []
    for chapter, read in reads.items():
        now = infos.get(chapter, {})
        if now.get("identity") == read["identity"]:
            continue
        was, is_ = changed_text(read.get("changed") or {}), changed_text(now.get("changed", {}))
        if not now:
            state = "none are in place"
        elif was != is_:
            state = f"those in place were made with {is_}"
        else:
            state = "those in place were made again since, by other code or data"
        words.append(f"{chapter} (it read results made with {was}; {state})")
    return words


def mark_stale(page: Path, profile: str, runs_root: Path | None = None) -> list:
    """Give a page a banner, under its title, naming the results it no longer matches and the command that rebuilds
    it (a former banner removed first); returns those results in words ([] for a page in date)."""
    notebook = json.loads(Path(page).read_text())
    cells = [c for c in notebook["cells"] if c.get("id") != STALE]
    stale = stale_reads(page, runs.chapter_infos(profile, runs_root))
    if stale:
        chapter, _, data_dir, chain = page_record(page)
        command = rebuild_command(chapter, profile, run_parameters(chain), data_dir)
        text = book_pages.stale_banner(stale, command, STALE)
        title = next((k for k, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
        cells.insert(title + 1, {"cell_type": "markdown", "id": STALE, "metadata": {"tags": [STALE]}, "source": text})
    if cells != notebook["cells"]:
        notebook["cells"] = cells
        Path(page).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    return stale


# ---------------------------------------------------------------- what _config.yml cannot do
# The configuration does the rest: no Thebe (its extension left out of the list), no notebook copies
# (html_copy_source), no widget views or their scripts (nb_mime_priority_overrides, nb_ipywidgets_js), no stderr.

SHOW_CODE = "show-code"  # the tag of a code cell whose code a page shows on purpose (none does yet)
ALT_FILE = "figure-alt.json"  # image file name -> alt text, written beside _build/html by prepare_pages


def shown_outputs(cell: dict) -> list:
    """The outputs of a cell that the page shows (stderr streams are removed by the build: nb_output_stderr)."""
    return [o for o in cell.get("outputs", [])
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            and (o.get("output_type") != "stream" or "".join(o.get("text", "")).strip())
            and (o.get("output_type") == "stream" or o.get("data") or o.get("output_type") == "error")]


def remove_empty_cells(notebook_path: Path) -> bool:
    """Tag remove-cell on each code cell that shows nothing, papermill's injected parameters included. Kept because
    what a cell shows is known only once it ran, and MyST-NB draws a 'show code' toggle over an empty cell."""
    notebook, changed = json.loads(Path(notebook_path).read_text()), False
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if cell.get("cell_type") == "code" and not shown_outputs(cell) and not {"remove-cell", SHOW_CODE} & set(tags):
            tags.append("remove-cell")
            changed = True
    if changed:
        Path(notebook_path).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    return changed


def figure_alts(notebook_path: Path) -> dict:
    """Image file name (as the build names it: the SHA-256 of the image's bytes) -> alt text, for every figure of
    an executed chapter whose text form the chapter set to the figure's title (plots.describe_figures). Kept because
    MyST-NB takes an image's alt text only from cell metadata, written before the run draws the figure."""
    alts = {}
    for cell in json.loads(Path(notebook_path).read_text()).get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = "".join(data.get("text/plain", ""))
            for mime, extension in (("image/png", ".png"), ("image/jpeg", ".jpeg")):
                if mime in data and text and not text.startswith("<Figure"):
                    digest = hashlib.sha256(base64.b64decode("".join(data[mime]))).hexdigest()
                    alts[digest + extension] = text.strip()
    return alts


def prepare_pages(book_root: Path, runs_root: Path | None = None, log=print) -> None:
    """Before jupyter-book: write the index and build pages, remove the cells that show nothing, give a banner to
    the pages that no longer match the results in place (naming them), and note every figure's alt text."""
    write_build_page(book_root, runs_root)
    if (Path(book_root) / "book" / "intro.template.md").is_file():
        intro = intro_page(book_root, runs_root)
        runs.write_atomic(Path(book_root) / "book" / "intro.md", lambda tmp: tmp.write_text(intro))
    alts, profile, stale = {}, executed_profile(book_root), []
    for path in sorted((Path(book_root) / "book" / "chapters").glob("*.ipynb")):
        if profile and ".failed." not in path.name and mark_stale(path, profile, runs_root):
            stale.append(path.stem)
        remove_empty_cells(path)
        alts.update(figure_alts(path))
    if stale:
        log(f"{len(stale)} page(s) read results that changed since they ran, each built with a banner that says "
            f"which: {', '.join(stale)}")
    text = json.dumps(alts, indent=1, ensure_ascii=False)
    runs.write_atomic(Path(book_root) / "_build" / ALT_FILE, lambda tmp: tmp.write_text(text))


IMG = re.compile(r"<img\b[^>]*>")
HEADING = re.compile(r"<h([1-3])[^>]*>(.*?)</h\1>", re.S)


def plain(fragment: str) -> str:
    """The text of an HTML fragment (tags and the theme's '#' anchors dropped, entities kept escaped)."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).replace("#", " ").split())


def meaningless_alt(alt) -> bool:
    """An alt text that tells a reader nothing: none, empty, or a file name or path."""
    return not alt or not alt.strip() or bool(re.fullmatch(r"[\w./:%-]*\.(png|jpe?g|svg|gif)|[\w./-]*/[\w./-]*", alt.strip()))


def with_alt_texts(page: str, alts: dict) -> str:
    """Every <img> of a page with a meaningful alt text: the figure's title (alts: file name -> text), else the
    section it sits in."""
    headings = [(m.start(), plain(m.group(2))) for m in HEADING.finditer(page)]

    def fix(match):
        tag = match.group(0)
        alt = re.search(r'\balt="([^"]*)"', tag)
        if alt and not meaningless_alt(html.unescape(alt.group(1))):
            return tag
        src = re.search(r'\bsrc="([^"]*)"', tag)
        name = src.group(1).rsplit("/", 1)[-1] if src else ""
        section = next((text for at, text in reversed(headings) if at < match.start()), "")
        text = alts.get(name) or (f"Figure in the section {section}" if section else "Figure")
        text = html.escape(" ".join(text.split()), quote=True)
        return re.sub(r'\balt="[^"]*"', f'alt="{text}"', tag) if alt else tag.replace("<img", f'<img alt="{text}"', 1)

    return IMG.sub(fix, page)


def clean_site(html_dir: Path) -> list:
    """After jupyter-book: delete the theme's source maps and their links, which no setting leaves out, and give every
    image a meaningful alt text (with_alt_texts); return the files that went."""
    html_dir = Path(html_dir)
    removed = list(html_dir.rglob("*.map"))
    for path in removed:
        path.unlink()
    alts = runs.read_json(html_dir.parent / ALT_FILE)
    for path in html_dir.rglob("*.html"):
        text = path.read_text()
        kept = with_alt_texts(text, alts)
        if kept != text:
            path.write_text(kept)
    for path in list(html_dir.rglob("*.js")) + list(html_dir.rglob("*.css")):
        text = path.read_text(errors="replace")
        if "sourceMappingURL" in text:
            kept = [line for line in text.splitlines(keepends=True) if "sourceMappingURL=" not in line]
            path.write_text("".join(kept))
    return removed


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
    prepare_pages(book_root, log=log)  # index and build pages, empty cells removed, stale banners
    missing = [f for f in toc_files(book_root)
               if not any((book_root / f"{f}{ext}").is_file() for ext in (".ipynb", ".md"))]
    if missing:
        raise RunnerError(f"pages not built yet: {', '.join(missing)}; run `{CXR} run` first")
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book_root)]
    log("$ " + " ".join(command))
    done = subprocess.run(command, cwd=book_root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RunnerError(f"jupyter-book failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    html = book_root / "_build" / "html" / "index.html"
    clean_site(html.parent)  # no source maps, and every image with an alt text
    log(f"book built: {html}")
    return html
