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
# chapter -> (the report's row it reproduces, words for the family of models)
HEADLINE = {
    "scratch": ("CNN_from_scratch", "CNN from scratch"),
    "preprocessing": ("Prep_scratch", "Otsu preprocessing"),
    "hyperband": ("Tuner", "Hyperband-tuned CNN"),
    "fused": ("Fused", "fused network"),
    "fused_grid": ("no_da_yes_rs_2048", "fused network variants"),
    "resizer": ("Resizer_2", "learnable resizer"),
    "pretrained": ("CheXNet1", "pretrained backbones"),
    "ensemble": ("Weighted average voting", "ensembles"),
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
    """'24 training images per class', or '' when the profile uses every image."""
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
             f"<li><strong>Weights:</strong> {e(weights)}</li>",
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
    """One column in the table style; a column of whole numbers (above 1) prints as integers throughout."""
    numbers = pd.to_numeric(column, errors="coerce")
    whole = numbers.notna().any() and numbers.dropna().map(lambda v: float(v).is_integer()).all() and numbers.abs().max() > 1
    if whole and numbers.notna().sum() == column.notna().sum():
        return numbers.map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
    return column.map(lambda v: cell_text(v, decimals))


def breakable(text: str) -> str:
    """Text whose long identifiers ('pretrained/chexnet_finetune_conv5_block15_0_bn') may wrap after '/' and '_'."""
    return re.sub(r"\S{21,}", lambda long: re.sub(r"([/_])", "\\1\u200b", long.group()), text)


def table_style(frame: pd.DataFrame, max_columns: int = 7, decimals: int = 3):
    """The book's one table style: formatted cells, and a wide table turned on its side to fit the column."""
    text = frame.apply(lambda column: column_texts(column, decimals)) if len(frame) else frame.astype(str)
    text = text.map(breakable)
    if frame.shape[1] > max_columns and frame.shape[0] < frame.shape[1]:
        text = text.T
    return text.style.set_table_attributes('class="cxr-table"')  # styled by _static/cxr.css in the book


def table_chunks(frame: pd.DataFrame, max_columns: int = 7) -> list:
    """A wide table split into column groups of at most max_columns (each keeps the row labels)."""
    return [frame.iloc[:, i:i + max_columns] for i in range(0, frame.shape[1], max_columns)] or [frame]


def table_html(frame: pd.DataFrame, max_columns: int = 7) -> str:
    """A table as the book shows it: styled, transposed when that makes it fit, else split in column groups."""
    if frame.shape[1] > max_columns and frame.shape[0] >= frame.shape[1]:
        return "".join(table_style(part, max_columns).to_html() for part in table_chunks(frame, max_columns))
    if frame.shape[1] > max_columns and frame.shape[0] > max_columns:
        frame = frame.T
        return "".join(table_style(part, max_columns).to_html() for part in table_chunks(frame, max_columns))
    return table_style(frame, max_columns).to_html()


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
    """Every metrics row one chapter saved (one row per model)."""
    frames = [pd.read_csv(p, index_col=0) for p in sorted((profile_dir / chapter / "metrics").glob("*.csv"))]
    return pd.concat(frames) if frames else pd.DataFrame()


def headline_table(profile_dir: Path, infos: dict) -> pd.DataFrame:
    """Per chapter: our best model by macro F1 beside the report's row, and what limited ours."""
    from cxrlib.report import REPORT, report_rows

    rows = []
    for chapter, (report_name, family) in HEADLINE.items():
        ours = chapter_metrics(profile_dir, chapter)
        if ours.empty or chapter not in infos or "F1-macro" not in ours:
            continue
        best = ours["F1-macro"].idxmax()
        info = infos[chapter]
        weights = info.get("weights", "") or infos.get("pretrained", {}).get("weights", "")
        pretrained_family = chapter in ("pretrained", "ensemble")
        label = model_label(str(best), not (pretrained_family and NO_WEIGHTS in weights))
        theirs = report_rows(report_name).iloc[0] if report_name in REPORT else None
        row = {"models": family, "our best": label}
        for metric in HEADLINE_METRICS:
            row[metric] = f"{cell_text(ours.loc[best, metric])} / {cell_text(theirs[metric]) if theirs is not None else '–'}"
        factors = limiting_factors(info.get("settings", {}), info.get("data", ""),
                                   weights if pretrained_family else "")
        common = set(limiting_factors(info.get("settings", {}), info.get("data", "")))
        extra = [f for f in factors if f not in common]
        row["limited by"] = "; ".join((["the build's limits (above)"] if common else []) + extra) or "nothing recorded"
        rows.append(row)
    return pd.DataFrame(rows)


def timings_table(profile_dir: Path) -> pd.DataFrame:
    """How long each chapter took, from the runner's timings.json (empty when it was not written)."""
    path = profile_dir / "timings.json"
    if not path.is_file():
        return pd.DataFrame()
    seconds = json.loads(path.read_text())
    return pd.DataFrame({"chapter": list(seconds), "seconds": [round(float(s)) for s in seconds.values()]})


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

def hide_injected_cells(notebook_path: Path) -> bool:
    """Tag papermill's injected-parameters cell remove-cell and drop widget state that cannot render."""
    notebook = json.loads(Path(notebook_path).read_text())
    changed = notebook.get("metadata", {}).pop("widgets", None) is not None
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
        for output in cell.get("outputs", []):
            if output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None) is not None:
                changed = True
    if changed:
        Path(notebook_path).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    return changed


def prepare_pages(book_root: Path, runs_root: Path | None = None) -> None:
    """Before jupyter-book: write the build page and clean the executed chapters for a static page."""
    write_build_page(book_root, runs_root)
    for path in sorted((Path(book_root) / "book" / "chapters").glob("*.ipynb")):
        hide_injected_cells(path)


def clean_site(html_dir: Path) -> list:
    """After jupyter-book: delete source maps and notebook copies, drop Thebe's tags; return what went."""
    html_dir = Path(html_dir)
    removed = [p for p in html_dir.rglob("*.map")] + [p for p in html_dir.rglob("*.ipynb")]
    for path in removed:
        path.unlink()
    for path in html_dir.rglob("*.html"):
        text = path.read_text()
        kept = THEBE.sub("", text)
        if kept != text:
            path.write_text(kept)
    for path in list(html_dir.rglob("*.js")) + list(html_dir.rglob("*.css")):
        text = path.read_text(errors="replace")
        if "sourceMappingURL" in text:
            kept = [line for line in text.splitlines(keepends=True) if "sourceMappingURL=" not in line]
            path.write_text("".join(kept))
    return removed
