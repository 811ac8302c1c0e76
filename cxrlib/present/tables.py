"""The book's one table style: numbers formatted alike, long identifiers breakable, wide tables turned or split."""
from __future__ import annotations

import math
import re

import pandas as pd

from cxrlib.science.choice import METRIC

# What a table of models chosen on validation shows of each: the model chosen and the score it was chosen by.
CHOICE_COLUMNS = ["chosen", METRIC]


def choice_with_targets(choice: pd.DataFrame, models: dict) -> pd.DataFrame:
    """The choice table (a row per model) with each model's Grad-CAM layer and grid (gradcam.target_description)."""
    from cxrlib.present.gradcam import target_description

    targets = pd.DataFrame({label: target_description(m) for label, m in models.items()}, columns=list(models))
    return pd.concat([choice, targets.T.set_axis(choice.index)], axis=1)


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
    a model predicts (labels.PREDICTED), so every part shows it beside its row."""
    from cxrlib.present.labels import PREDICTED

    note = frame[[PREDICTED]] if PREDICTED in frame.columns and frame.shape[1] > max_columns else None
    rest = frame.drop(columns=PREDICTED) if note is not None else frame
    width = max_columns - (note is not None)
    groups = max(1, -(-rest.shape[1] // width))
    size = -(-rest.shape[1] // groups) if rest.shape[1] else 1
    parts = [rest.iloc[:, i:i + size] for i in range(0, rest.shape[1], size)] or [rest]
    return [part.assign(**{PREDICTED: note[PREDICTED].to_numpy()}) for part in parts] if note is not None else parts


def table_html(frame: pd.DataFrame, max_columns: int = 7) -> str:
    """A table as the book shows it: styled; a wide one turned on its side where that reads well, else split."""
    if frame.shape[1] > max_columns and not turnable(frame, max_columns):
        return "".join(table_style(part, max_columns).to_html() for part in table_chunks(frame, max_columns))
    return table_style(frame, max_columns).to_html()


def use_book_tables() -> None:
    """Show every DataFrame of a running chapter in the book's table style (a no-op outside IPython)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table in the book's table style (formatted cells, pipes escaped)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell_text(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
