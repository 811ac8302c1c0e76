"""Labels and words that travel with numbers: a model's name tagged when it had no pretrained weights, the weights
each backbone started from, what a profile's run is worth, and the summary box that opens every chapter."""
from __future__ import annotations

import html
import re

from cxrlib.core.config import PROFILES

# The report's settings (the full profile's): a run below them is limited by that setting.
REPORT_EPOCHS, REPORT_SIZE, REPORT_BACKBONE_SIZE = (PROFILES["full"][k] for k in ("epochs", "resize_to", "backbone_size"))

NO_WEIGHTS = "no pretrained weights"
SUMMARY_CLASS = "cxr-summary"


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


def limiting_factors(settings: dict, source: dict | None = None, weights: dict | None = None) -> list:
    """Every way this run falls short of the report's settings, as short phrases (empty: none); source and weights
    are chapter.json's fields (the data's kind and image count; backbone -> its weights)."""
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
    if backbone is not None and backbone < REPORT_BACKBONE_SIZE and weights:
        factors.append(f"{backbone} px backbone inputs (report: {REPORT_BACKBONE_SIZE})")
    if weights and not all_pretrained(weights):
        factors.append(NO_WEIGHTS)
    kind = (source or {}).get("kind")
    if kind == "synthetic":
        factors.append("synthetic images")
    elif kind == "sample":
        factors.append(f"the {source['images']:,}-image real sample")
    return factors


def model_label(name: str, pretrained: bool) -> str:
    """A model's name as every figure, legend and table row shows it: tagged when it had no pretrained weights."""
    return name if pretrained or NO_WEIGHTS in name else f"{name} ({NO_WEIGHTS})"


def all_pretrained(weights: dict) -> bool:
    """Whether every backbone of a chapter's weights record (backbone -> its fields) started from pretrained ones."""
    return all(used["pretrained"] for used in weights.values())


def weights_text(weights: dict, inherited: bool = False) -> str:
    """What a page says of a chapter's weights record: one short phrase per backbone, no folders, no instructions."""
    if not weights:
        return "unknown (run the pretrained chapter)" if inherited else "not used by this chapter"
    text = "; ".join(f"{used['title']}: {used['short']}" for used in weights.values())
    return f"the pretrained chapter's models used: {text}" if inherited else text


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


# Where a page shows Loss, log-loss or ECE of models whose biases were shifted on validation (balance_predictions).
AFTER_BALANCING = ("Loss, log-loss and ECE here are measured after each model's classifier biases were shifted to "
                   "match the classes' shares on validation (balance_predictions): they include what that shift does "
                   "to the probabilities, not the trained network's alone.")


def temperature_reading(table) -> str:
    """What the fitted temperatures say, from calibration.temperature_table's flags: which way each model was off on
    validation, and every model whose test log-loss or ECE scaling made worse."""
    from cxrlib.science.calibration import OVERCONFIDENT

    over, n = int(table[OVERCONFIDENT].sum()), len(table)
    text = (f"Of the {n} fitted temperatures, {n - over} {'is' if n - over == 1 else 'are'} below 1 (the model was "
            f"under-confident on validation: dividing its logits by T < 1 sharpens them) and {over} above 1 "
            "(over-confident: T > 1 softens them).")
    worse = {metric: table.index[table[f"{metric} after"] > table[f"{metric} before"]] for metric in ("log-loss", "ECE")}
    said = [f"the test {metric} of {', '.join(names)}" for metric, names in worse.items() if len(names)]
    if not said:
        return text + " Scaling raises neither test log-loss nor ECE for any model."
    return (text + f" Scaling worsens {'; and '.join(said)}: there, the temperature fitted on the validation set does "
            "not carry over to the test set.")


DID_NOT_LEARN = "did not learn"


def not_learned_text(name: str, model, history) -> str:
    """Why a model stopped at chance, from its history and its own layers ('' when it learned): the epochs at chance,
    where its last convolutions see 1 x 1 maps that cause (found on the first CNN at the cpu profile's size), and
    whether training shrank the difference between images' predictions."""
    from cxrlib.science.training import FLAT_EPOCHS, SPREAD, did_not_learn

    if not did_not_learn(history):
        return ""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    on_one, spread = sum(layer.input.shape[1] == 1 for layer in convs), history[SPREAD]
    text = (f"**{name} {DID_NOT_LEARN}.** Its training loss stayed at chance (ln 4 = 1.386) and its predicted "
            f"probabilities differed between images by at most {spread.tail(FLAT_EPOCHS).max():.0e} for {FLAT_EPOCHS} "
            f"epochs in a row, so training stopped after {len(history)} epochs; its numbers below are those of a "
            "constant guess.")
    if on_one:
        text += (f" At {convs[0].input.shape[1]} px the last {on_one} of its {len(convs)} convolutions see 1 x 1 maps, "
                 "where 8 of a 3 x 3 kernel's 9 weights meet only padding: with the report's initialisation (Keras's "
                 "default) and no normalisation, what tells one image from another fades through the layers and is "
                 "all but gone there, so the untrained net gives every image nearly the same probabilities.")
    if spread.iloc[-1] < spread.iloc[0]:
        text += (f" Training shrank that difference (from {spread.iloc[0]:.0e} after the first epoch to "
                 f"{spread.iloc[-1]:.0e}) instead of growing it.")
    return text
