"""Labels and words that travel with numbers: a model's name tagged when it had no pretrained weights, the weights
each backbone started from, what a profile's run is worth, the summary box that opens every chapter, the ensembles'
names, the classes a model predicts and a fitted temperature (the science layer returns keys and numbers)."""
from __future__ import annotations

import html
import re

from cxrlib.core.manifest import FROM_SCRATCH, PROFILES

# The report's settings (the full profile's): a run below them is limited by that setting.
SIZES = ("epochs", "resize_to", "backbone_size")
REPORT_EPOCHS, REPORT_SIZE, REPORT_BACKBONE_SIZE = (PROFILES["full"][k] for k in SIZES)

NO_WEIGHTS = "no pretrained weights"
# Where predictions were balanced (calibration.balancing_offsets), loss, log-loss and ECE measure the shifted model.
AFTER_BALANCING = "after the balancing shift"
SUMMARY_CLASS = "cxr-summary"
# Which classes a model predicts on a split (predicted_classes): words beside the metrics, never a metric.
PREDICTED = "classes predicted"
# The columns a results table shows beside the metrics and their intervals: loss, speed and what is predicted.
BESIDE_METRICS = ["Loss", "Inference time (s)", PREDICTED]
# The baseline that never sees a pixel (cxrlib.science.baseline), as every table names it.
LABELS_ONLY = "labels only (NIH's fields, no pixels)"
# each ensemble's saved key (science.ensemble.METHODS) -> the name of its row, and the words for its weights' column
ENSEMBLE_NAMES = {"average": "Average voting", "ga": "Weighted average voting (GA)",
                  "differential_evolution": "Weighted average voting (differential evolution)"}
WEIGHTINGS = {"average": "uniform (average voting)", "ga": "genetic algorithm",
              "differential_evolution": "differential evolution"}


def plural(count: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{count} {word}{'s' * (count != 1)}"


def per_class_text(max_per_class) -> str:
    """'16 training images per class', or '' when the profile uses every image."""
    if isinstance(max_per_class, dict) and max_per_class.get("train"):
        return f"{max_per_class['train']} training images per class"
    return ""


def input_sizes(settings: dict, chapter: str = "") -> str:
    """The input size of the models a chapter trains or reads: the from-scratch nets' resize, the backbones' input,
    or both for the chapters that read every family."""
    if chapter in FROM_SCRATCH or "backbone_size" not in settings:
        return f"{settings.get('resize_to')} px"
    if chapter == "pretrained":
        return f"{settings['backbone_size']} px"
    return f"{settings.get('resize_to')} px (backbones {settings['backbone_size']} px)"


def profile_in_words(profile: str, settings: dict, chapter: str = "") -> str:
    """One sentence saying what a build of this profile is good for (its sizes: those of the chapter's models)."""
    epochs = settings.get("epochs")
    per_class = per_class_text(settings.get("max_per_class"))
    if profile == "smoke":
        detail = ", ".join(x for x in (plural(epochs, "epoch"), per_class) if x)
        return f"smoke build: {detail}; for checking the machinery, not for reading the numbers"
    if profile == "cpu":
        return (f"cpu build: up to {epochs} epochs at {input_sizes(settings, chapter)} on the small real sample; "
                "small-sample numbers, not comparable with the report's")
    if profile == "full":
        return f"full build: the report's settings (up to {epochs} epochs at {input_sizes(settings, chapter)})"
    return f"{profile} build"


def limiting_factors(settings: dict, source: dict | None = None, weights: dict | None = None) -> list:
    """Every way this run falls short of the report's settings, as short phrases (source, weights: chapter.json's)."""
    epochs, size, backbone = map(settings.get, SIZES)
    kind = (source or {}).get("kind")
    factors = [below(epochs, REPORT_EPOCHS) and f"{plural(epochs, 'epoch')} (report: up to {REPORT_EPOCHS})",
               per_class_text(settings.get("max_per_class")),
               below(size, REPORT_SIZE) and f"{size} px images (report: {REPORT_SIZE})",
               weights and below(backbone, REPORT_BACKBONE_SIZE)
               and f"{backbone} px backbone inputs (report: {REPORT_BACKBONE_SIZE})",
               weights and not all_pretrained(weights) and NO_WEIGHTS,
               kind == "synthetic" and "synthetic images",
               kind == "sample" and f"the {source['images']:,}-image real sample"]
    return [factor for factor in factors if factor]


def below(value, report) -> bool:
    """Whether a setting is recorded and below the report's."""
    return value is not None and value < report


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
                commit: str, provenance: str = "", command: str = "", chapter: str = "", warning: str = "") -> str:
    """The boxed summary that opens every chapter; the full provenance follows, collapsed."""
    e = html.escape
    changed_text = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "none"
    lines = [f"<p class='cxr-summary-profile'><strong>{e(profile_in_words(profile, settings, chapter))}.</strong></p>",
             "<ul>",
             f"<li><strong>Data:</strong> {e(data)}; used {e(counts)}</li>",
             f"<li><strong>Weights:</strong> {e(weights)}</li>",
             f"<li><strong>Parameters changed from the defaults:</strong> {e(changed_text)}</li>",
             f"<li><strong>Commit:</strong> <code>{e(commit)}</code></li>",
             command and f"<li><strong>Rebuild this page:</strong> <code>{e(command)}</code></li>",
             warning and f"<li><strong>Patients:</strong> {inline_markdown(warning)}</li>",
             "</ul>",
             provenance and f"<details><summary>Full provenance</summary><p>{inline_markdown(provenance)}</p>"
             "</details>"]
    style = "border:2px solid #446;border-radius:6px;background:#f4f6fb;padding:0.6em 1em;margin:0.5em 0 1em 0"
    return f'<div class="{SUMMARY_CLASS}" style="{style}">' + "".join(lines) + "</div>"


def same_patient_note(patients) -> str:
    """Which images shown together come from one patient (patients: image id -> patient), in a sentence ('' when
    every image is of another patient): a patient's images are correlated, so such a gallery shows fewer cases."""
    groups = [ids for _, ids in patients.groupby(patients).groups.items() if len(ids) > 1]
    if not groups:
        return ""
    parts = [f"{', '.join(map(str, ids))} (patient {patients[ids[0]]})" for ids in groups]
    return f"Images of one patient: {'; '.join(parts)}."


def patient_share_sentence(table, largest=None, cap=None) -> str:
    """What the validation and test splits rest on, by patient (table: the split table), and a warning where one
    patient supplies more of a class's images than the stated share."""
    from cxrlib.science.data.splits import patient_shares, patients_over_share

    shares, over = patient_shares(table), patients_over_share(table, largest)
    top = shares.loc[shares["largest share of one patient"].idxmax()]
    capped = f"at most {cap} images of any one patient are used; " if cap else ""
    said = (f"Counted by patient: {capped}the largest share of a class's validation or test images that one patient "
            f"supplies is {top['largest share of one patient']:.0%} (patient {top['that patient']}, "
            f"{top['images'] * top['largest share of one patient']:.0f} of the {top['images']} {top['class']} images "
            f"of {top['split']})")
    if over.empty:
        return said + (f", within the stated {largest:.0%}." if largest is not None else ".")
    return said + f". **Above the stated {largest:.0%}** in {len(over)} class(es) and split(s): " + \
        "their intervals rest on fewer patients than images."


def ensemble_name(key: str) -> str:
    """An ensemble's name from its saved key ('ensemble/ga' or 'ga')."""
    name = key.split("/", 1)[-1]
    return ENSEMBLE_NAMES.get(name, name)


def predicted_classes(y_pred) -> str:
    """Which classes a model predicts on a split, in words: 'all 4', '3: never No Finding', 'only Effusion'.

    A model that never predicts No Finding has an FNFR of 0 by construction, and one that predicts a single
    class has F1 0 for every other: every table that shows such a row says so beside it (column PREDICTED).
    """
    from cxrlib.core.config import CLASSES

    used = {int(k) for k in y_pred}
    if len(used) == 1:
        return f"only {CLASSES[used.pop()]}"
    never = [c for k, c in enumerate(CLASSES) if k not in used]
    return f"all {len(CLASSES)}" if not never else f"{len(used)}: never {', '.join(never)}"


def metrics_row(name: str, y_true, probs, seconds: float = float("nan")):
    """science.metrics.metrics_row with PREDICTED beside it: the row every table shows and the run folder keeps."""
    import numpy as np

    from cxrlib.science import metrics

    row = metrics.metrics_row(name, y_true, probs, seconds)
    row[PREDICTED] = predicted_classes(np.asarray(probs, float).argmax(axis=1))
    return row


def temperature_text(temperature: float, at_bound: bool) -> str:
    """A fitted temperature; a search that stopped at an end reads so: '≥ 100 (search bound, not a fit)'."""
    bound = f"{'≤' if temperature < 1 else '≥'} {temperature:g} (search bound, not a fit)"
    return bound if at_bound else f"{temperature:.3f}"


OVERCONFIDENT = "over-confident (T > 1)"  # worded_temperatures' flag: dividing by T > 1 softened the probabilities
WORSE = "worse on test after scaling"  # its flag: the test log-loss or ECE rose


def worded_temperatures(table):
    """science.calibration.temperature_table as the page shows it: each temperature in words (temperature_text), and
    two flags: whether the model was over-confident on validation and whether scaling made its test log-loss or ECE
    worse (a temperature fitted on a small validation set need not carry over)."""
    words = [temperature_text(t, bound) for t, bound in zip(table["temperature"], table["at search bound"])]
    shown = table.drop(columns=["temperature", "at search bound"])
    shown.insert(0, "temperature (fitted on validation)", words)
    worse = (table["ECE after"] > table["ECE before"]) | (table["log-loss after"] > table["log-loss before"])
    return shown.assign(**{OVERCONFIDENT: table["temperature"] > 1, WORSE: worse})
# Where a page shows Loss, log-loss or ECE of models whose biases were shifted on validation (balance_predictions).
BALANCING_NOTE = ("Loss, log-loss and ECE here are measured after each model's classifier biases were shifted on "
                   "validation to the prior it trained for (balance_predictions; equal class shares under class "
                   "weights): they include what that shift does to the probabilities, not the trained network's "
                   "alone.")


def temperature_reading(table, boot=None, test_logits: dict | None = None) -> str:
    """What the fitted temperatures say, from calibration.temperature_table's flags: which way each model was off on
    validation, and every model whose test log-loss or ECE scaling made worse. Given the page's bootstrap and the
    test logits, a worse log-loss is one whose interval of the difference (after minus before) lies above 0, and
    the ECE, which has no interval, is named as a point estimate."""
    over, n = int((table["temperature"] > 1).sum()), len(table)
    text = (f"Of the {n} fitted temperatures, {n - over} {'is' if n - over == 1 else 'are'} below 1 (the model was "
            f"under-confident on validation: dividing its logits by T < 1 sharpens them) and {over} above 1 "
            "(over-confident: T > 1 softens them).")
    worse = {metric: table.index[table[f"{metric} after"] > table[f"{metric} before"]] for metric in ("log-loss", "ECE")}
    said = [f"the test {metric} of {', '.join(names)}" for metric, names in worse.items() if len(names)]
    if boot is not None:
        said = worse_by_interval(table, boot, test_logits, worse["ECE"])
    if not said:
        return text + " Scaling raises neither test log-loss nor ECE for any model."
    return (text + f" Scaling worsens {'; and '.join(said)}: there, the temperature fitted on the validation set does "
            "not carry over to the test set.")


def worse_by_interval(table, boot, test_logits: dict, worse_ece) -> list:
    """The models scaling made worse: test log-loss by its interval (after minus before), ECE as point estimates."""
    from cxrlib.present.claims import units
    from cxrlib.science.calibration import scale, softmax

    raised = [name for name in table.index if boot.difference(
        scale(test_logits[name], table.loc[name, "temperature"]), softmax(test_logits[name]), "Loss").low > 0]
    said = []
    if raised:
        said.append(f"the test log-loss of {', '.join(raised)} (by its interval on "
                    f"{units(boot.images, boot.patient_count)})")
    if len(worse_ece):
        said.append(f"the test ECE of {', '.join(worse_ece)} (point estimates: the ECE has no interval here)")
    return said


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


def fine_tune_words(fine_tune: str, profile: str) -> str:
    """Which unfreeze points this run fine-tunes from, in words, from its own setting."""
    return f"The `{profile}` run " + {"none": "fine-tunes no backbone (`fine_tune: none`): only the heads are trained.",
                                      "first": "fine-tunes from the first point of each row only (`fine_tune: first`).",
                                      "all": "fine-tunes from every point of each row (`fine_tune: all`)."}[fine_tune]
