"""What the rendered book needs beyond the chapters: the summary box, one table style, the build page,
and the steps before and after jupyter-book runs (hidden injected cells, no source maps or notebook copies)."""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

NO_WEIGHTS = "no pretrained weights"
# The report's settings: a run below them is limited by that setting.
REPORT_EPOCHS, REPORT_SIZE, REPORT_BACKBONE_SIZE = 30, 227, 224
# chapter -> words for its family of models (the build page pairs each chapter's best with report.counterpart)
HEADLINE = {
    "scratch": "CNN from scratch",
    "preprocessing": "Otsu preprocessing",
    "hyperband": "Hyperband-tuned CNN",
    "fused": "fused network",
    "fused_grid": "fused network variants",
    "resizer": "learnable resizer",
    "pretrained": "pretrained backbones",
    "ensemble": "ensembles",
}
HEADLINE_METRICS = ("Accuracy", "F1-macro", "ROC AUC")
SUMMARY_CLASS = "cxr-summary"
# sphinx-thebe's tags: the static book has no kernel, and the theme declares THEBE_JS_URL twice
# ("Identifier 'THEBE_JS_URL' has already been declared" on every page)
THEBE = re.compile(r'<script>const THEBE_JS_URL[^<]*</script>\s*|<script[^>]*sphinx-thebe\.js[^>]*></script>\s*'
                   r'|<link[^>]*sphinx-thebe\.css[^>]*/>\s*|<script type="text/x-thebe-config">.*?</script>\s*', re.S)
LIBRARIES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "matplotlib", "jupyter-book")


# ---------------------------------------------------------------- what a run is worth, in words

def per_class_text(max_per_class) -> str:
    """'16 training images per class', or '' when the profile uses every image."""
    if isinstance(max_per_class, dict) and max_per_class.get("train"):
        return f"{max_per_class['train']} training images per class"
    return ""


def profile_in_words(profile: str, settings: dict) -> str:
    """One sentence saying what a build of this profile is good for."""
    epochs = settings.get("epochs")
    per_class = per_class_text(settings.get("max_per_class"))
    if profile == "smoke":
        detail = ", ".join(x for x in (f"{epochs} epochs", per_class) if x)
        return f"smoke build: {detail}; for checking the machinery, not for reading the numbers"
    if profile == "cpu":
        return (f"cpu build: up to {epochs} epochs at {settings.get('resize_to')} px on the small real sample; "
                "small-sample numbers, not comparable with the report's")
    if profile == "full":
        return f"full build: the report's settings (up to {epochs} epochs at {settings.get('resize_to')} px)"
    return f"{profile} build"


def limiting_factors(settings: dict, data: str = "", weights: str = "") -> list:
    """Every way this run falls short of the report's settings, as short phrases (empty: none)."""
    factors = []
    epochs = settings.get("epochs")
    if epochs is not None and epochs < REPORT_EPOCHS:
        factors.append(f"{epochs} epochs (report: up to {REPORT_EPOCHS})")
    per_class = per_class_text(settings.get("max_per_class"))
    if per_class:
        factors.append(per_class)
    size = settings.get("resize_to")
    if size is not None and size < REPORT_SIZE:
        factors.append(f"{size} px images (report: {REPORT_SIZE})")
    backbone = settings.get("backbone_size")
    if backbone is not None and backbone < REPORT_BACKBONE_SIZE and weights and "not used" not in weights:
        factors.append(f"{backbone} px backbone inputs (report: {REPORT_BACKBONE_SIZE})")
    if NO_WEIGHTS in (weights or ""):
        factors.append(NO_WEIGHTS)
    lowered = (data or "").lower()
    if "synthetic" in lowered:
        factors.append("synthetic images")
    elif "sample" in lowered:
        found = re.search(r"\(([\d,]+) [^)]*images\)", data)
        factors.append(f"the {found.group(1)}-image real sample" if found else "the small real sample")
    return factors


# A local path (an absolute one, or one under the home folder; not an address) in a weights description:
# readers see its file name only.
LOCAL_PATH = re.compile(r"(?<![\w:/.])(?:~|/)[^\s;,()]*/([^\s;,()/]+)")
# What the weights descriptions of cxrlib.models.backbones say at length, and the short phrase a page shows.
WEIGHTS_SHORT = (
    (r"no pretrained weights: ImageNet file not found and no network; place [^\s;]+ \(from [^)]*\) in [^\s;]+",
     f"{NO_WEIGHTS} (ImageNet file not found, offline)"),
    (r"no CheXNet file given \([^)]*\), so DenseNet121 with no pretrained weights",
     f"{NO_WEIGHTS} (no CheXNet file given)"),
    (r"no CheXNet file given \([^)]*\), so DenseNet121 with ", "no CheXNet file given, so "),
    (r"ImageNet \((?:~|/)[^)]*\)", "ImageNet (Keras's cache)"),
)


def weights_for_readers(text: str) -> str:
    """A weights description as a page shows it: one short phrase per backbone, no local folders, no instructions.

    'VGG16: no pretrained weights: ImageNet file not found and no network; place x.h5 (from https://...) in
    /root/.keras/models/' reads 'VGG16: no pretrained weights (ImageNet file not found, offline)'; a file's
    folder is left out ('CheXNet (/data/w/chexnet.h5; ...)' reads 'CheXNet (chexnet.h5; ...)'). The kernel log
    keeps the full text with its instructions.
    """
    text = text or ""
    for long, short in WEIGHTS_SHORT:
        text = re.sub(long, short, text)
    return LOCAL_PATH.sub(r"\1", text)


def model_label(name: str, pretrained: bool) -> str:
    """A model's name as every figure, legend and table row shows it: tagged when it had no pretrained weights."""
    return name if pretrained or NO_WEIGHTS in name else f"{name} ({NO_WEIGHTS})"


# ---------------------------------------------------------------- the summary box

def inline_markdown(text: str) -> str:
    """**bold** and `code` of a one-line Markdown text as HTML (everything else escaped)."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def summary_box(*, profile: str, settings: dict, data: str, counts: str, weights: str, changed: dict,
                commit: str, provenance: str = "", command: str = "") -> str:
    """The boxed summary that opens every chapter; the full provenance follows, collapsed."""
    e = html.escape
    changed_text = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "none"
    lines = [f"<p class='cxr-summary-profile'><strong>{e(profile_in_words(profile, settings))}.</strong></p>",
             "<ul>",
             f"<li><strong>Data:</strong> {e(data)}; used {e(counts)}</li>",
             f"<li><strong>Weights:</strong> {e(weights_for_readers(weights))}</li>",
             f"<li><strong>Parameters changed from the defaults:</strong> {e(changed_text)}</li>",
             f"<li><strong>Commit:</strong> <code>{e(commit)}</code></li>"]
    if command:
        lines.append(f"<li><strong>Rebuild this page:</strong> <code>{e(command)}</code></li>")
    lines.append("</ul>")
    if provenance:
        lines.append(f"<details><summary>Full provenance</summary><p>{inline_markdown(provenance)}</p></details>")
    style = "border:2px solid #446;border-radius:6px;background:#f4f6fb;padding:0.6em 1em;margin:0.5em 0 1em 0"
    return f'<div class="{SUMMARY_CLASS}" style="{style}">' + "".join(lines) + "</div>"


# ---------------------------------------------------------------- one table style

def cell_text(value, decimals: int = 3) -> str:
    """Integers as integers, a dash where no value exists, other numbers with `decimals` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        value = float(value)
        if value.is_integer() and abs(value) > 1:
            return f"{int(value):,}"
        if value != 0 and abs(value) < 10 ** -decimals:
            return f"{value:.1e}"
        return f"{value:.{decimals}f}"
    return str(value)


def column_texts(column: pd.Series, decimals: int = 3) -> pd.Series:
    """One column in the table style, one number format throughout: a column of whole numbers (above 1) prints
    as integers, and a column where any value needs scientific notation prints every nonzero value that way
    ('1.0e-04' beside '1.0e-03', never beside '0.001')."""
    numbers = pd.to_numeric(column, errors="coerce")
    all_numbers = numbers.notna().sum() == column.notna().sum()
    whole = numbers.notna().any() and numbers.dropna().map(lambda v: float(v).is_integer()).all() and numbers.abs().max() > 1
    if whole and all_numbers:
        return numbers.map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
    tiny = numbers.dropna().map(lambda v: v != 0 and abs(v) < 10 ** -decimals).any()
    if tiny and all_numbers and column.dtype.kind == "f":
        return numbers.map(lambda v: "–" if pd.isna(v) else "0" if v == 0 else f"{v:.1e}")
    return column.map(lambda v: cell_text(v, decimals))


def breakable(text: str) -> str:
    """Text whose long identifiers ('pretrained/chexnet_finetune_conv5_block15_0_bn') may wrap after '/' and '_'."""
    return re.sub(r"\S{21,}", lambda long: re.sub(r"([/_])", "\\1\u200b", long.group()), text)


def table_style(frame: pd.DataFrame, max_columns: int = 7, decimals: int = 3):
    """The book's one table style: formatted cells, long identifiers breakable (column names never: a header
    wraps between words only, _static/cxr.css)."""
    text = frame.apply(lambda column: column_texts(column, decimals)) if len(frame) else frame.astype(str)
    text = text.map(breakable).rename(index=lambda label: breakable(str(label)))  # row names too, never headers
    if turnable(frame, max_columns):
        return text.T.style.set_table_attributes('class="cxr-table"')
    styled = text.style.set_table_attributes('class="cxr-table"')  # styled by _static/cxr.css in the book
    words = [c for c in frame.columns if pd.to_numeric(frame[c], errors="coerce").notna().sum() < frame[c].notna().sum()]
    if words and frame.columns.is_unique:  # words read from the left, numbers line up on the right
        styled = styled.set_properties(subset=words, **{"text-align": "left"})
    return styled


def turnable(frame: pd.DataFrame, max_columns: int = 7) -> bool:
    """Whether a wide table reads better on its side: at most 3 rows with names (not 0, 1, 2, which would
    become column headers that say nothing, and not a row index of several levels)."""
    index = frame.index
    named = not isinstance(index, pd.RangeIndex) and index.nlevels == 1
    return frame.shape[1] > max_columns and frame.shape[0] <= 3 and named


def table_chunks(frame: pd.DataFrame, max_columns: int = 7) -> list:
    """A wide table split into column groups of at most max_columns and of near equal widths (10 columns: 5 and
    5, never 7 and a lone 3rd), each keeping the row labels, and each keeping the column that says which classes
    a model predicts (metrics.PREDICTED), so every part shows it beside its row."""
    from cxrlib.metrics import PREDICTED

    note = frame[[PREDICTED]] if PREDICTED in frame.columns and frame.shape[1] > max_columns else None
    rest = frame.drop(columns=PREDICTED) if note is not None else frame
    width = max_columns - (note is not None)
    groups = max(1, -(-rest.shape[1] // width))
    size = -(-rest.shape[1] // groups) if rest.shape[1] else 1
    parts = [rest.iloc[:, i:i + size] for i in range(0, rest.shape[1], size)] or [rest]
    return [part.assign(**{PREDICTED: note[PREDICTED].to_numpy()}) for part in parts] if note is not None else parts


def table_html(frame: pd.DataFrame, max_columns: int = 7) -> str:
    """A table as the book shows it: styled; a wide one turned on its side where that reads well (turnable),
    else split in column groups of near equal widths."""
    if frame.shape[1] > max_columns and not turnable(frame, max_columns):
        return "".join(table_style(part, max_columns).to_html() for part in table_chunks(frame, max_columns))
    return table_style(frame, max_columns).to_html()


def library_logs_to_stderr() -> None:
    """Send TensorFlow's Python log (which writes to stdout in an interactive kernel: 'WARNING:tensorflow:5 out
    of the last 9 calls ... retracing') to stderr: into the chapter's log, never into its page."""
    import logging
    import sys

    try:
        import tensorflow as tf

        logger = tf.get_logger()  # made on first use, with a stdout handler in a kernel: make it now, then move it
    except ImportError:
        logger = logging.getLogger("tensorflow")
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def use_book_tables() -> None:
    """Show every DataFrame of a running chapter in the book's table style (a no-op outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)


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


def read_infos(profile_dir: Path) -> dict:
    """chapter -> its chapter.json, for the chapters that ran."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(profile_dir.glob("*/chapter.json"))}


def chapter_metrics(profile_dir: Path, chapter: str) -> pd.DataFrame:
    """Every metrics row one chapter saved (one row per model), indexed by the model's saved name (its file's
    name, what report.counterpart knows), with the name its row shows in column "label"."""
    frames = []
    for path in sorted((profile_dir / chapter / "metrics").glob("*.csv")):
        row = pd.read_csv(path, index_col=0)
        frames.append(row.assign(label=[str(name) for name in row.index]).set_axis([path.stem] * len(row)))
    return pd.concat(frames) if frames else pd.DataFrame()


def headline_table(profile_dir: Path, infos: dict) -> pd.DataFrame:
    """Per chapter: our best model by macro F1 beside the report's row for that same model (report.counterpart;
    a dash where the report has none), which classes it predicts where not all, and what limited ours."""
    from cxrlib.metrics import PREDICTED
    from cxrlib.report import counterpart, report_rows

    rows = []
    for chapter, family in HEADLINE.items():
        ours = chapter_metrics(profile_dir, chapter)
        if ours.empty or chapter not in infos or "F1-macro" not in ours:
            continue
        best = ours["F1-macro"].idxmax()
        info = infos[chapter]
        weights = info.get("weights", "") or infos.get("pretrained", {}).get("weights", "")
        pretrained_family = chapter in ("pretrained", "ensemble")
        label = model_label(str(ours.loc[best, "label"]), not (pretrained_family and NO_WEIGHTS in weights))
        predicts = ours.loc[best, PREDICTED] if PREDICTED in ours else ""
        if isinstance(predicts, str) and predicts and not predicts.startswith("all "):  # an FNFR of 0 or an F1 of 0 that means "never predicts"
            label += f" (predicts {predicts.replace(': never', ' classes; never')})"
        report_name = counterpart(chapter, str(best))
        theirs = report_rows(report_name).iloc[0] if report_name else None
        row = {"models": family, "our best": label, "the report's row": report_name or "none for this model"}
        for metric in HEADLINE_METRICS:
            row[metric] = f"{cell_text(ours.loc[best, metric])} / {cell_text(theirs[metric]) if theirs is not None else '–'}"
        factors = limiting_factors(info.get("settings", {}), info.get("data", ""),
                                   weights if pretrained_family else "")
        common = set(limiting_factors(info.get("settings", {}), info.get("data", "")))
        extra = [f for f in factors if f not in common]
        row["limited by"] = "; ".join((["the build's limits (above)"] if common else []) + extra) or "nothing recorded"
        rows.append(row)
    return pd.DataFrame(rows)


# What each chapter spends its time on, beside what its run folder counts (models trained, epochs run).
CHAPTER_WORK = {
    "dataset": "reads the label files and decodes each image once",
    "preprocessing": "Otsu-cropped copies of the images, then the fused net trained on them",
    "resizer": "the learnable resizer with and without augmentation",
    "scratch": "the report's two from-scratch CNNs",
    "hyperband": "a Hyperband search over the fused net's head",
    "fused": "the fused CNN",
    "fused_grid": "the base net and the report's grid of fused variants",
    "pretrained": "features and fine tuning of four backbones (VGG16, ResNet152, ResNet50, DenseNet121)",
    "error_analysis": "loads every chosen model; Grad-CAM of the misclassified images, cached for the browser",
    "explainability": "activation maps and Grad-CAM of every model, scored against NIH's boxes",
    "ensemble": "genetic algorithm and differential evolution on validation predictions, patient bootstrap",
    "subgroups": "patient-clustered bootstrap of error rates by sex, age and view",
    "conclusions": "reads every chapter's metrics",
}
SLOWEST_EXPLAINED = 3


def chapter_work(profile_dir: Path, chapter: str) -> str:
    """Why a chapter takes its time: what it computes, and the models and epochs its run folder holds."""
    histories = sorted((Path(profile_dir) / chapter / "histories").glob("*.csv"))
    epochs = sum(max(len(path.read_text().splitlines()) - 1, 0) for path in histories)
    counted = f"; {len(histories)} models trained, {epochs} epochs in all" if histories else ""
    return CHAPTER_WORK.get(chapter, "") + counted


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


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table in the book's table style (formatted cells, pipes escaped)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell_text(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def build_page(book_root: Path, runs_root: Path | None = None, today: str | None = None) -> str:
    """The build page's Markdown: profile, data, date, commit, versions, chapter times and headline results."""
    from cxrlib.config import runs_dir

    profile = executed_profile(book_root)
    lines = ["# This build", ""]
    if profile is None:
        return "\n".join(lines + ["No chapter has been executed yet: run `cxr run` first.", ""])
    profile_dir = Path(runs_root or runs_dir()) / profile
    infos = read_infos(profile_dir)
    first = next(iter(infos.values()), {})
    settings = first.get("settings", {})
    commits = sorted({i.get("commit", "unknown") for i in infos.values()})
    lines += [f"**{profile_in_words(profile, settings)}.**", "",
              f"- **Profile:** `{profile}`",
              f"- **Data:** {first.get('data', 'unknown (no run folder found at ' + str(profile_dir) + ')')}",
              f"- **Built:** {today or _dt.date.today().isoformat()}",
              f"- **Commit:** {', '.join(f'`{c}`' for c in commits) or 'unknown'}",
              f"- **Libraries:** {library_versions()}",
              f"- **Limited by:** {'; '.join(limiting_factors(settings, first.get('data', ''))) or 'nothing recorded'}",
              "", "## Our best results beside the report's", "",
              "Each cell reads *ours / the report's* (test set); the last column says what limited our run.", ""]
    headline = headline_table(profile_dir, infos)
    lines += [markdown_table(headline) if not headline.empty else "No model has been trained in this run folder yet.",
              "", "## How long each chapter took", ""]
    timings = timings_table(profile_dir)
    lines += [markdown_table(timings) if not timings.empty else "The runner recorded no chapter times for this build.",
              ""]
    return "\n".join(lines)


def write_build_page(book_root: Path, runs_root: Path | None = None) -> Path:
    """book/build.md, regenerated at every build from the run folder."""
    path = Path(book_root) / "book" / "build.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_page(book_root, runs_root))
    return path


# ---------------------------------------------------------------- before and after jupyter-book

SHOW_CODE = "show-code"  # the tag of a code cell whose code a page shows on purpose (none does yet)
HIDDEN = ("hide-input", "remove-input", "remove-cell", "hide-cell")
ALT_FILE = "figure-alt.json"  # image file name -> alt text, written beside _build/html by prepare_pages


def shown_outputs(cell: dict) -> list:
    """The outputs of a cell that the page shows (stderr streams are removed by the build: nb_output_stderr)."""
    return [o for o in cell.get("outputs", [])
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            and (o.get("output_type") != "stream" or "".join(o.get("text", "")).strip())
            and (o.get("output_type") == "stream" or o.get("data") or o.get("output_type") == "error")]


def hide_injected_cells(notebook_path: Path) -> bool:
    """Ready an executed chapter for a static page: papermill's injected-parameters cell removed, every code cell's
    code hidden unless tagged SHOW_CODE, a cell that shows nothing removed (no empty 'show code' toggle), and
    widget state that cannot render dropped."""
    notebook = json.loads(Path(notebook_path).read_text())
    changed = notebook.get("metadata", {}).pop("widgets", None) is not None
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        for output in cell.get("outputs", []):
            if output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None) is not None:
                changed = True
        if cell.get("cell_type") != "code" or "remove-cell" in tags:
            continue
        before = list(tags)
        if "injected-parameters" in tags or "parameters" in tags or (not shown_outputs(cell) and SHOW_CODE not in tags):
            tags[:] = [t for t in tags if t not in HIDDEN] + ["remove-cell"]
        elif SHOW_CODE not in tags and not any(t in tags for t in HIDDEN):
            tags.append("hide-input")
        changed |= tags != before
    if changed:
        Path(notebook_path).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    return changed


def figure_alts(notebook_path: Path) -> dict:
    """Image file name (as the build names it: the SHA-256 of the image's bytes) -> alt text, for every figure of
    an executed chapter whose text form the chapter set to the figure's title (plots.describe_figures)."""
    import base64
    import hashlib

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


def prepare_pages(book_root: Path, runs_root: Path | None = None) -> None:
    """Before jupyter-book: write the build page, clean the executed chapters for a static page, and note every
    figure's alt text for clean_site."""
    write_build_page(book_root, runs_root)
    alts = {}
    for path in sorted((Path(book_root) / "book" / "chapters").glob("*.ipynb")):
        hide_injected_cells(path)
        alts.update(figure_alts(path))
    target = Path(book_root) / "_build" / ALT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(alts, indent=1, ensure_ascii=False))


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
    """After jupyter-book: delete source maps and notebook copies, drop Thebe's tags, give every image a meaningful
    alt text (with_alt_texts); return what went."""
    html_dir = Path(html_dir)
    removed = [p for p in html_dir.rglob("*.map")] + [p for p in html_dir.rglob("*.ipynb")]
    for path in removed:
        path.unlink()
    alt_file = html_dir.parent / ALT_FILE
    alts = json.loads(alt_file.read_text()) if alt_file.is_file() else {}
    for path in html_dir.rglob("*.html"):
        text = path.read_text()
        kept = with_alt_texts(THEBE.sub("", text), alts)
        if kept != text:
            path.write_text(kept)
    for path in list(html_dir.rglob("*.js")) + list(html_dir.rglob("*.css")):
        text = path.read_text(errors="replace")
        if "sourceMappingURL" in text:
            kept = [line for line in text.splitlines(keepends=True) if "sourceMappingURL=" not in line]
            path.write_text("".join(kept))
    return removed
