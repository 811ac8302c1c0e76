"""`cxr predict`: a saved model on new PNG or JPEG files or folders, decoded exactly as in training, to a CSV.

    cxr predict scans/ chest.png --model fused/fused --profile cpu -o predictions.csv --gradcam overlays/

The model is runs/<profile>/<chapter>/models/<model>.keras. Every image goes through the library's own decode
(bit depth, grey conversion, the checks, the harmonised native size and the resize the model was trained
with, then its preprocessing transform), so a file gets the probabilities it would have had in the test set.
A file that fails the checks, or is smaller than MIN_SIDE, has its reason in its row and on one line (exit status
1); a model whose input size or classes do not match what was saved with it is refused (exit status 2).
Temperature scaling is applied only where one was fitted on validation for exactly this trained model (its
identity) and the fit did not stop at a search bound (saved_temperature); the CSV says why none was applied.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, PROGRESS_AFTER_S, runs_dir
from cxrlib.core.frames import column_classes, probability_columns
from cxrlib.core.files import write_atomic
from cxrlib.machinery import identity
from cxrlib.machinery.inputs.decode import inspect_header
from cxrlib.machinery.runs import model_identity, read_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHUNK = 512  # files decoded and predicted at a time, so a large folder never sits in memory whole
MIN_SIDE = 32  # px on the short side: a smaller picture holds no chest for the model to read, so it is refused
DECIMALS = 6  # the CSV's probabilities and temperature
PROBABILITY_COLUMNS = [c.lower().replace(' ', '_') for c in probability_columns()]  # the CSV's: p_no_finding, ...
APPLIED = "fitted on validation"
# TensorFlow's C++ start-up lines: absl's format and its note that it logs before being initialised, and TSL's
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl"
                        r"|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+:\d+\] )")


class PredictError(ValueError):
    """A model or request cxr predict refuses, in one line."""


@dataclass
class SavedModel:
    """A saved model with what decoding for it needs: input size, transform, harmonised size, temperature."""

    key: str
    model: object
    size: int
    transform: str | None
    harmonise_to: int | None
    batch_size: int
    temperature: float | None
    temperature_status: str


# ---------------------------------------------------------------- the files

def image_files(paths) -> list:
    """[(file, problem)] in the order given: files given, and the PNG and JPEG files under folders given (sorted);
    the problem is '' but for a path that does not exist."""
    files = []
    for given in map(Path, paths):
        if given.is_dir():
            files += sorted((p, "") for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append((given, "" if given.is_file() else "no such file or folder"))
    return files


def too_small(path: Path) -> str:
    """Why an image is refused for its size, from its header ('' when it is not, or when the header cannot be
    read: the decode then says why)."""
    try:
        width, height, _ = inspect_header(path.read_bytes())
    except OSError:
        return ""
    if not width or min(width, height) >= MIN_SIDE:
        return ""
    return f"{width}x{height} px, below the minimum of {MIN_SIDE} px on the short side"


# ---------------------------------------------------------------- the model and what it was trained with

def split_key(key: str) -> tuple:
    """('chapter', 'model') of 'chapter/model'; refused otherwise."""
    chapter, sep, name = str(key).partition("/")
    if not sep or not chapter or not name or "/" in name:
        raise PredictError(f"--model {key!r} is not of the form CHAPTER/MODEL (e.g. fused/fused)")
    return chapter, name


def model_file(folder: Path, key: str, name: str) -> Path:
    """The model's .keras file; refused with the models the chapter saved when absent."""
    path = folder / "models" / f"{name}.keras"
    if not path.is_file():
        saved = sorted(p.stem for p in (folder / "models").glob("*.keras"))
        raise PredictError(f"no saved model {path} (for {key}); models saved there: {', '.join(saved) or 'none'}")
    return path


def image_model(folder: Path, key: str, name: str):
    """The model that takes images: a features-only head is replaced by its '<model>_on_images' join."""
    from cxrlib.science.models import load

    model = load(model_file(folder, key, name))
    if model.input.shape[-1] in (1, 3) and len(model.input.shape) == 4:
        return model
    joined = folder / "models" / f"{name}_on_images.keras"
    if not joined.is_file():
        raise PredictError(f"model {key} takes backbone features of shape {tuple(model.input.shape[1:])}, not "
                           f"images, and {joined} (it joined to its backbone) is missing")
    return load(joined)


def check_input(model, key: str, spec: dict) -> int:
    """The square grey input size; refused where the model's input is not that or differs from its record."""
    shape = tuple(model.input.shape[1:])
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 1:
        raise PredictError(f"model {key} takes input of shape {shape}; cxr predict feeds square grey images "
                           f"(size, size, 1), as training did")
    recorded = spec.get("image_size") or spec.get("size")
    if recorded and int(recorded) != shape[0]:
        raise PredictError(f"model {key} takes {shape[0]}x{shape[0]} images, but its record says it was trained "
                           f"on {recorded} px images: the saved model and its record disagree; re-run its chapter")
    return int(shape[0])


def check_classes(model, key: str, folder: Path, name: str) -> None:
    """The model's outputs and its saved predictions' classes must be this library's classes, in order."""
    outputs = model.output.shape[-1]
    if outputs != len(CLASSES):
        raise PredictError(f"model {key} outputs {outputs} classes; cxr predict needs {len(CLASSES)}: "
                           f"{', '.join(CLASSES)}")
    saved = min((folder / "predictions").glob(f"{name}__*.csv"), default=None)
    if saved is None:
        return
    columns = column_classes(pd.read_csv(saved, nrows=0).columns)
    if columns != list(CLASSES):
        raise PredictError(f"model {key} was saved with the classes {', '.join(columns)}; this library's are "
                           f"{', '.join(CLASSES)}")


def harmonised_size(info: dict, key: str, data_dir=None):
    """The native size the model's images were first brought down to (None: none), as its chapter's data had it.

    The size is the training source's smallest native size, so with harmonise_resolution on the training data
    must be found (data_dir, else where `cxr run` looks) and be the very data the chapter recorded.
    """
    settings = info.get("settings", {})
    if "harmonise_to" in info:
        return info["harmonise_to"]
    if not settings.get("harmonise_resolution"):
        return None
    from cxrlib.machinery.inputs import DataError, load_for

    try:
        data = load_for(data_dir, settings)
    except (DataError, KeyError) as err:
        raise PredictError(f"model {key} was trained on images first brought to one native size, and its training "
                           f"data cannot be read to find that size: {err}; give them with --data") from None
    if identity.data_identity(data, settings) != info.get("data_identity"):
        raise PredictError(f"model {key} was trained on {info.get('data', 'other data')} with harmonise_resolution "
                           f"on, and the data found now ({data.source.describe()}) are not those; give them with "
                           f"--data, so that images are brought to the same native size")
    return data.harmonise_to


def saved_temperature(profile_dir: Path, key: str) -> tuple:
    """(temperature, status): the temperature fitted on validation for exactly the trained model 'chapter/model'
    now in place, by its identity; else None and why none applies (a retrained model's is stale, and a fit
    that stopped at an end of its search is a bound, not a fit)."""
    listed = (read_json(path).get(key) for path in sorted(Path(profile_dir).glob("*/temperatures.json")))
    found = next((entry for entry in listed if entry), None)
    made = model_identity(profile_dir, key)
    if found is None:
        return None, "none (not fitted)"
    if not made or found.get("model_identity") != made:
        return None, "none (fitted on another training)"
    if found.get("at_bound"):
        return None, "none (search bound)"
    value = found.get("temperature")
    if not (isinstance(value, (int, float)) and value > 0):
        raise PredictError(f"the temperature saved for model {key} is {value!r}; it must be a number > 0")
    return float(value), APPLIED


def load_saved_model(key: str, profile: str = "cpu", root=None, data_dir=None) -> SavedModel:
    """A chapter's saved model with everything its decoding needs, each mismatch refused in one line."""
    chapter, name = split_key(key)
    profile_dir = Path(root or runs_dir()) / profile
    folder = profile_dir / chapter
    info = read_json(folder / "chapter.json")
    if not info:
        raise PredictError(f"no results of chapter '{chapter}' under {profile_dir} (no {folder / 'chapter.json'}); "
                           f"run: cxr run {chapter} --profile {profile}")
    model = image_model(folder, key, name)
    spec = read_json(folder / "models" / f"{name}.json").get("spec", {})
    size = check_input(model, key, spec)
    check_classes(model, key, folder, name)
    return SavedModel(key, model, size, spec.get("preprocess"), harmonised_size(info, key, data_dir),
                      int(info.get("settings", {}).get("batch_size", 16)), *saved_temperature(profile_dir, key))


# ---------------------------------------------------------------- decoding and predicting

def probabilities(saved: SavedModel, images: np.ndarray) -> np.ndarray:
    """Class probabilities of (N, size, size) uint8 images as the chapters compute them (softmax of the logits
    in float64), temperature-scaled where a temperature was saved."""
    from cxrlib.science.calibration import scale
    from cxrlib.science.data.pipeline import make_dataset
    from cxrlib.science.training import predict_with_logits

    probs, logits, _ = predict_with_logits(saved.model, make_dataset(images, None, saved.batch_size))
    return probs if saved.temperature is None else scale(logits, saved.temperature)


def rows_for(paths: list, errors: list, probs: np.ndarray, saved: SavedModel) -> pd.DataFrame:
    """One CSV row per file, in order; probs has a row for each file without an error."""
    frame = pd.DataFrame({"file": [str(p) for p in paths], **{c: np.nan for c in PROBABILITY_COLUMNS},
                          "predicted": "", "temperature": np.nan, "temperature_status": "", "gradcam_file": "",
                          "error": errors})
    good = frame["error"] == ""
    frame.loc[good, PROBABILITY_COLUMNS] = probs
    frame.loc[good, "predicted"] = [CLASSES[k] for k in probs.argmax(axis=1)]
    frame.loc[good, "temperature"] = saved.temperature
    frame.loc[good, "temperature_status"] = saved.temperature_status
    return frame


# ---------------------------------------------------------------- Grad-CAM

def overlay_name(folder: Path, path: Path, taken: set) -> Path:
    """A PNG name in folder for this file's overlay, unique within the run."""
    stem, k = path.stem, 1
    target = folder / f"{stem}.gradcam.png"
    while target in taken:
        k += 1
        target = folder / f"{stem}-{k}.gradcam.png"
    taken.add(target)
    return target


def write_overlay(saved: SavedModel, image: np.ndarray, class_index: int, target: Path, name: str = "") -> str:
    """The predicted class's Grad-CAM over the image as a PNG; its path, or '' where the map has no spatial
    information at this input size (nothing to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrlib.present import gradcam as cam_figures
    from cxrlib.science import gradcam

    cells, _ = gradcam.gradcam_cells(saved.model, image, class_index)
    if not gradcam.has_spatial_information(cells):
        return ""
    fig, ax = plt.subplots(figsize=(4, 4.3))
    title = f"{name}\nGrad-CAM of {CLASSES[class_index]} ({saved.key})".lstrip()
    cam_figures.overlay(ax, image, gradcam.upsample(cells, image.shape[:2]), title)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return str(target)


def gradcam_summary(table: pd.DataFrame, folder) -> str:
    """One line: how many overlays were written where, and how many maps had no spatial information."""
    predicted = table[table["error"] == ""]
    written = int((predicted["gradcam_file"] != "").sum())
    empty = f"; {len(predicted) - written} map(s) with no spatial information at this input size, so no overlay " \
            f"(gradcam_file empty)" if written < len(predicted) else ""
    return f"Grad-CAM: {written} overlay(s) written to {folder}{empty}"


# ---------------------------------------------------------------- the command

def predict_chunk(chunk: list, saved: SavedModel, step, gradcam, taken: set, progress) -> pd.DataFrame:
    """The CSV rows of one chunk of (file, problem), in order; the bar counts decoded images, or with gradcam
    the overlays written (and the files that failed)."""
    from cxrlib.machinery.inputs.images import fill

    errors = [why or too_small(path) for path, why in chunk]
    usable = [k for k, why in enumerate(errors) if not why]
    images = np.zeros((len(usable), saved.size, saved.size), np.uint8)  # the training decode: checked, resized
    reasons = fill(images, [chunk[k][0] for k in usable], saved.size, step, saved.harmonise_to,
                   desc=f"decoding for {saved.key}")
    for k, why in zip(usable, reasons):
        errors[k] = why
    good = [(chunk[k][0], image) for k, image, why in zip(usable, images, reasons) if not why]
    progress.update(len(chunk) - len(good) if gradcam else len(chunk))
    probs = probabilities(saved, np.stack([i for _, i in good])) if good else np.zeros((0, len(CLASSES)))
    frame = rows_for([path for path, _ in chunk], errors, probs, saved)
    if gradcam and good:  # each predicted class's overlay, counted as it is written
        written = []
        for (path, image), k in zip(good, probs.argmax(axis=1)):
            written.append(write_overlay(saved, image, int(k), overlay_name(Path(gradcam), path, taken), path.name))
            progress.update(1)
        frame.loc[frame["error"] == "", "gradcam_file"] = written
    return frame


def predict_files(paths, saved: SavedModel, gradcam=None, err=None) -> pd.DataFrame:
    """The CSV rows, one per file in the order given (a file that could not be used has its error), with a
    progress bar on long lists; with gradcam (a folder) an overlay per file."""
    from tqdm.std import tqdm

    from cxrlib.science.otsu import transform_step

    files = image_files(paths)
    if not files:
        raise PredictError(f"no PNG or JPEG file in {', '.join(map(str, paths))}")
    step, frames, taken = transform_step(saved.transform), [], set()
    if gradcam:
        Path(gradcam).mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(files), desc=f"predicting with {saved.key}", unit="image", file=err or sys.stderr,
              delay=PROGRESS_AFTER_S) as progress:
        for start in range(0, len(files), CHUNK):
            frames.append(predict_chunk(files[start:start + CHUNK], saved, step, gradcam, taken, progress))
    return pd.concat(frames, ignore_index=True)


def run_predict(paths, key: str, profile: str = "cpu", output="predictions.csv", gradcam=None, data_dir=None,
                out=None, err=None) -> int:
    """The command: predict, write the CSV, name every file that failed on a line; 1 when any failed, else 0."""
    out, err = out or sys.stdout, err or sys.stderr
    saved = load_saved_model(key, profile, data_dir=data_dir)
    table = predict_files(paths, saved, gradcam, err)
    failed = table[table["error"] != ""]
    for path, why in zip(failed["file"], failed["error"]):
        print(f"cxr predict: {path}: {why}", file=err)
    # probabilities and temperature at DECIMALS decimals (an empty field where there is none)
    write_atomic(Path(output), lambda tmp: table.to_csv(tmp, index=False, float_format=f"%.{DECIMALS}f"))
    temperature = saved.temperature_status if saved.temperature is None else f"T = {saved.temperature:.4g}, {APPLIED}"
    print(f"{len(table) - len(failed)} image(s) predicted with {key} (profile {profile}, {saved.size} px, temperature "
          f"{temperature}) -> {output}; {len(failed)} could not be used", file=out)
    if gradcam:
        print(gradcam_summary(table, gradcam), file=out)
    return 1 if len(failed) else 0


EXAMPLE = f"""example:
  cxr predict new_scans/ chest.jpg --model fused/fused --profile cpu -o predictions.csv --gradcam overlays/

One CSV row per file: file, {', '.join(PROBABILITY_COLUMNS)} ({DECIMALS} decimals), predicted, temperature
(empty where none was applied), temperature_status, gradcam_file, error. A file that cannot be used (it fails
the decode checks, or is under {MIN_SIDE} px on its short side) has its error in its row and on one line, the
others are still predicted, and the exit status is 1; a refused model exits with 2."""


def add_parser(sub) -> None:
    """The `cxr predict` subcommand and its options."""
    predict = sub.add_parser("predict", help="run a saved model on new PNG or JPEG files or folders",
                             description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched for PNG and JPEG")
    predict.add_argument("--model", required=True, metavar="CHAPTER/MODEL",
                         help="a saved model: runs/<profile>/<chapter>/models/<model>.keras (e.g. fused/fused)")
    predict.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help="smoke, cpu or full")
    predict.add_argument("-o", "--output", default="predictions.csv", help="the CSV to write (default: %(default)s)")
    predict.add_argument("--gradcam", metavar="DIR", help="also write the predicted class's Grad-CAM over each image")
    predict.add_argument("--data", default=os.environ.get("CXR_DATA_DIR"),
                         help="the model's training data, where its chapter harmonised resolutions (default: where "
                              "cxr run looks)")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines (oneDNN's and CUDA's notes, twice) kept off the console:
    TensorFlow 2.21 writes them to the process's stderr before TF_CPP_MIN_LOG_LEVEL takes effect, so that stream
    is held in a file during the import, and whatever else the import wrote is passed on."""
    sys.stderr.flush()
    console = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(console, 2)
            os.close(console)
        held.seek(0)
        lines = held.read().decode(errors="replace").splitlines(keepends=True)
    sys.stderr.write("".join(line for line in lines if not NATIVE_LOG.match(line)))


def main(args) -> int:
    """Run the parsed `cxr predict` arguments."""
    import_tensorflow_quietly()
    return run_predict(args.paths, args.model, args.profile, args.output, args.gradcam, args.data)
