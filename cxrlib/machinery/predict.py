"""`cxr predict`: a saved model on new PNG or JPEG files or folders, decoded exactly as in training, to a CSV.

    cxr predict scans/ chest.png --model fused/fused --profile cpu -o predictions.csv --gradcam overlays/

The model is runs/<profile>/<chapter>/models/<model>.keras. Every image goes through the library's own decode
(bit depth, grey conversion, the checks, the harmonised native size and the resize the model was trained
with, then its preprocessing transform), so a file gets the probabilities it would have had in the test set.
A file that fails the checks is named with its reason on one line and the others are still predicted (exit
status 1); a model whose input size or classes do not match what was saved with it is refused (exit status 2).

Temperature scaling is applied only where a temperature fitted on the validation set was saved for the model:
the key "temperature" of its record (models/<model>.json), or its 'chapter/model' entry in a temperatures.json
of any chapter folder of the profile; the CSV says which, or that none was applied.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES, PROGRESS_AFTER_S, runs_dir
from cxrlib.machinery import identity
from cxrlib.machinery.runs import read_json, write_csv

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHUNK = 512  # files decoded and predicted at a time, so a large folder never sits in memory whole
NOT_APPLIED = "not applied"


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


# ---------------------------------------------------------------- the files

def image_files(paths) -> tuple:
    """(files, problems): files given, and the PNG and JPEG files under folders given (sorted); problems names
    paths that do not exist."""
    files, problems = [], []
    for given in map(Path, paths):
        if given.is_dir():
            files += sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif given.is_file():
            files.append(given)
        else:
            problems.append((given, "no such file or folder"))
    return files, problems


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
    saved = next(iter(sorted((folder / "predictions").glob(f"{name}__*.csv"))), None)
    if saved is None:
        return
    columns = [c[2:] for c in pd.read_csv(saved, nrows=0).columns if c.startswith("p_")]
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


def saved_temperature(profile_dir: Path, folder: Path, key: str, name: str):
    """The temperature fitted on validation and saved for this model, else None."""
    found = read_json(folder / "models" / f"{name}.json").get("temperature")
    if found is None:
        listed = (read_json(path).get(key) for path in sorted(profile_dir.glob("*/temperatures.json")))
        found = next((value for value in listed if value is not None), None)
    if isinstance(found, dict):
        found = found.get("temperature")
    if found is not None and not (isinstance(found, (int, float)) and found > 0):
        raise PredictError(f"the temperature saved for model {key} is {found!r}; it must be a number > 0")
    return None if found is None else float(found)


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
                      int(info.get("settings", {}).get("batch_size", 16)),
                      saved_temperature(profile_dir, folder, key, name))


# ---------------------------------------------------------------- decoding and predicting

def probabilities(saved: SavedModel, images: np.ndarray) -> np.ndarray:
    """Class probabilities of (N, size, size) uint8 images as the chapters compute them (softmax of the logits
    in float64), temperature-scaled where a temperature was saved."""
    from cxrlib.science.calibration import scale
    from cxrlib.science.data.pipeline import make_dataset
    from cxrlib.science.training import predict_with_logits

    probs, logits, _ = predict_with_logits(saved.model, make_dataset(images, None, saved.batch_size))
    return probs if saved.temperature is None else scale(logits, saved.temperature)


def temperature_text(saved: SavedModel) -> str:
    """What the CSV says about temperature scaling."""
    if saved.temperature is None:
        return NOT_APPLIED
    return f"applied (T = {saved.temperature:.4g}, fitted on the validation set)"


def rows_for(paths: list, probs: np.ndarray, saved: SavedModel) -> pd.DataFrame:
    """One CSV row per file: the file, each class's probability, the predicted class, temperature scaling."""
    frame = pd.DataFrame(probs, columns=[f"p_{name}" for name in CLASSES])
    frame.insert(0, "file", [str(p) for p in paths])
    frame["predicted"] = [CLASSES[k] for k in probs.argmax(axis=1)]
    frame["temperature scaling"] = temperature_text(saved)
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
    """The predicted class's Grad-CAM over the image as a PNG; what the CSV says (its path, or no information)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrlib.present import gradcam as cam_figures
    from cxrlib.science import gradcam

    cells, _ = gradcam.gradcam_cells(saved.model, image, class_index)
    if not gradcam.has_spatial_information(cells):
        return f"{gradcam.NO_SPATIAL_INFORMATION} (Grad-CAM grid {cells.shape[0]}x{cells.shape[1]})"
    fig, ax = plt.subplots(figsize=(4, 4.3))
    title = f"{name}\nGrad-CAM of {CLASSES[class_index]} ({saved.key})".lstrip()
    cam_figures.overlay(ax, image, gradcam.upsample(cells, image.shape[:2]), title)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return str(target)


def overlays(saved: SavedModel, good: list, predicted, folder: Path, taken: set, tick) -> list:
    """write_overlay of every (path, image) for its predicted class, calling tick() after each."""
    written = []
    for (path, image), label in zip(good, predicted):
        written.append(write_overlay(saved, image, CLASSES.index(label), overlay_name(folder, path, taken), path.name))
        tick()
    return written


def gradcam_summary(said: pd.Series, folder) -> str:
    """One line: how many overlays were written where, and how many maps had no spatial information."""
    written = int(said.str.endswith(".png").sum())
    empty = f"; {len(said) - written} map(s) with no spatial information at this input size, so no overlay (the " \
            f"CSV says so)" if written < len(said) else ""
    return f"Grad-CAM: {written} overlay(s) written to {folder}{empty}"


# ---------------------------------------------------------------- the command

def predict_chunk(chunk: list, saved: SavedModel, step, gradcam, taken: set, progress) -> tuple:
    """(frame of the usable files, [(file, reason)] of the others) for one chunk of files; the bar counts decoded
    images, or with gradcam the overlays written (and the files that failed)."""
    from cxrlib.machinery.inputs.images import fill

    images = np.zeros((len(chunk), saved.size, saved.size), np.uint8)  # the training decode: checked, resized
    reasons = fill(images, chunk, saved.size, step, saved.harmonise_to, desc=f"decoding for {saved.key}")
    failed = [(path, why) for path, why in zip(chunk, reasons) if why]
    good = [(path, image) for path, image, why in zip(chunk, images, reasons) if not why]
    progress.update(len(failed) if gradcam else len(chunk))
    if not good:
        return None, failed
    frame = rows_for([path for path, _ in good], probabilities(saved, np.stack([i for _, i in good])), saved)
    if gradcam:
        frame["gradcam"] = overlays(saved, good, frame["predicted"], Path(gradcam), taken,
                                    lambda: progress.update(1))
    return frame, failed


def predict_files(paths, saved: SavedModel, gradcam=None, err=None) -> tuple:
    """(predictions frame, [(file, reason)] of the files that could not be used), with a progress bar on long
    lists; with gradcam (a folder) an overlay per file."""
    from tqdm.std import tqdm

    files, failed = image_files(paths)
    if not files and not failed:
        raise PredictError(f"no PNG or JPEG file in {', '.join(map(str, paths))}")
    from cxrlib.science.otsu import transform_step

    step, frames, taken = transform_step(saved.transform), [], set()
    if gradcam:
        Path(gradcam).mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(files), desc=f"predicting with {saved.key}", unit="image", file=err or sys.stderr,
              delay=PROGRESS_AFTER_S) as progress:
        for start in range(0, len(files), CHUNK):
            frame, bad = predict_chunk(files[start:start + CHUNK], saved, step, gradcam, taken, progress)
            frames += [] if frame is None else [frame]
            failed += bad
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), failed


def run_predict(paths, key: str, profile: str = "cpu", output="predictions.csv", gradcam=None, data_dir=None,
                out=None, err=None) -> int:
    """The command: predict, write the CSV, name every file that failed on a line; 1 when any failed, else 0."""
    out, err = out or sys.stdout, err or sys.stderr
    saved = load_saved_model(key, profile, data_dir=data_dir)
    table, failed = predict_files(paths, saved, gradcam, err)
    for path, why in failed:
        print(f"cxr predict: {path}: {why}", file=err)
    if not table.empty:
        write_csv(Path(output), table)
    print(f"{len(table)} image(s) predicted with {key} (profile {profile}, {saved.size} px, temperature scaling "
          f"{temperature_text(saved)}){f' -> {output}' if len(table) else ''}; {len(failed)} could not be used",
          file=out)
    if gradcam and len(table):
        print(gradcam_summary(table["gradcam"], gradcam), file=out)
    return 1 if failed else 0


EXAMPLE = """example:
  cxr predict new_scans/ chest.jpg --model fused/fused --profile cpu -o predictions.csv --gradcam overlays/

Each row of the CSV: the file, each class's probability, the predicted class and whether temperature scaling
(fitted on the validation set) was applied. A file that fails the decode checks is named with its reason on
one line, the others are still predicted, and the exit status is 1; a refused model exits with 2."""


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


def main(args) -> int:
    """Run the parsed `cxr predict` arguments."""
    return run_predict(args.paths, args.model, args.profile, args.output, args.gradcam, args.data)
