"""Browsing misclassified test images: the project's Jupyter kernel, the Grad-CAM cache that the
error-analysis chapter keeps in its run folder, and `cxr browse` (Voilà, or JupyterLab with --lab).

The cache, runs/<profile>/error_analysis/browser/: predictions.csv (every chosen model's test
predictions, by display label), images.npz (the images some model gets wrong), heatmaps.npz (each
model's Grad-CAM of each image it gets wrong, HEATMAP_SIZE px, 0-255) and browser.json (the models'
order). The browser only reads it; no click waits on Grad-CAM.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import webbrowser
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import REPO_ROOT, runs_dir
from cxrlib.core.frames import probability_columns
from cxrlib.machinery import runs
from cxrlib.machinery.parallel import free_port
from cxrlib.present.selection import vote
from cxrlib.science.gradcam import gradcam_cells_batch, has_spatial_information, heatmap_at, upsample

KERNEL = "cxr-book"
CHAPTER = "error_analysis"
FOLDER = "browser"
HEATMAP_SIZE = 64
NOTEBOOK = REPO_ROOT / "notebooks" / "browse" / "browse.ipynb"
PROFILE_ENV = "CXR_BROWSE_PROFILE"
TEMPLATES = NOTEBOOK.parent  # voila/templates/cxr-browse below it, found through JUPYTER_PATH


def kernel_name() -> str:
    """The project's kernel where `make env` registered it for this Python, else ipykernel's own 'python3'."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return "python3"
    ours = Path(os.path.abspath(spec.argv[0])).parent == Path(os.path.abspath(sys.executable)).parent
    return KERNEL if ours else "python3"


# ---------------------------------------------------------------- the cache in the run folder

def cache_folder(profile: str, root=None) -> Path:
    """Where the error-analysis chapter's results keep what the browser shows."""
    return runs.ChapterRun(profile, CHAPTER, root).live / FOLDER


def misclassified(predictions: dict) -> list:
    """(model, image id) for every test image a model gets wrong."""
    return [(model, image_id) for model, frame in predictions.items()
            for image_id in frame.loc[frame["pred"] != frame["label"], "Image Index"]]


def browsed_pairs(predictions: dict) -> list:
    """(model or 'all models', image id) for every image the browser can show with that choice."""
    from cxrlib.present.selection import ALL_MODELS, Selection

    return misclassified(predictions) + [(ALL_MODELS, i) for i in Selection(predictions).pick(ALL_MODELS)["Image Index"]]


def heatmap_source(models: dict, images_for, size: int):
    """A function (model name or 'all models', image id, class index) -> Grad-CAM at size, for the browser.

    Every heatmap explains one named class: the one given, else the model's prediction ('all models': the
    class most models predict). 'All models' averages the models' maps of that class that have spatial
    information; when none has, the result is constant and reads as such. Maps are computed once and remembered.
    """
    memory = {}

    def one(name: str, image_id: str, class_index=None):
        """One model's map of a class (None: its prediction) and the class explained."""
        key = (name, image_id, class_index)
        if key not in memory:
            memory[key] = heatmap_at(models[name], images_for, image_id, size, class_index)
            memory[name, image_id, memory[key][1]] = memory[key]
        return memory[key]

    def compute(wanted) -> None:
        """Fill memory for (model, image id, class or None) keys, one batched Grad-CAM pass per model."""
        for name in models:
            keys = [key for key in dict.fromkeys(wanted) if key[0] == name and key not in memory]
            if not keys:
                continue
            side = models[name].input.shape[1]
            images = images_for([image_id for _, image_id, _ in keys], side)
            found = gradcam_cells_batch(models[name], [images[i] for _, i, _ in keys], [k for _, _, k in keys])
            for (_, image_id, class_index), (cells, explained) in zip(keys, found):
                memory[name, image_id, class_index] = memory[name, image_id, explained] = (
                    upsample(cells, (size, size)), explained)

    def prefetch(pairs) -> None:
        """Compute the maps of many (model or 'all models', image id) pairs in batches, before they are asked for."""
        pairs = list(pairs)
        compute([(n, i, None) for name, i in pairs for n in (models if name not in models else [name])])
        compute([(n, i, vote([memory[m, i, None][1] for m in models])) for name, i in pairs if name not in models
                 for n in models])

    def heatmap(name: str, image_id: str, class_index=None):
        if name in models:
            return one(name, image_id, class_index)[0]
        if class_index is None:
            class_index = vote([one(n, image_id)[1] for n in models])
        maps = [one(n, image_id, int(class_index))[0] for n in models]
        informative = [m for m in maps if has_spatial_information(m)]
        return np.mean(informative, axis=0) if informative else np.zeros((size, size), np.float32)
    heatmap.prefetch = prefetch
    return heatmap


def compute_heatmaps(models: dict, images_for, predictions: dict) -> dict:
    """(model or 'all models', image id) -> the Grad-CAM the browser overlays (gradcam.heatmap_source's), at
    HEATMAP_SIZE px as uint8 (0-255), for every image the browser can show."""
    source, pairs = heatmap_source(models, images_for, HEATMAP_SIZE), browsed_pairs(predictions)
    source.prefetch(pairs)
    return {pair: np.round(np.clip(source(*pair), 0, 1) * 255).astype(np.uint8) for pair in pairs}


def stacked(arrays: list, empty_shape: tuple, dtype) -> np.ndarray:
    """np.stack, also of nothing."""
    return np.stack(arrays).astype(dtype) if arrays else np.zeros((0, *empty_shape), dtype)


def write_npz(path: Path, **arrays) -> Path:
    """Atomic compressed .npz."""
    return runs.write_atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def save_cache(folder: Path, predictions: dict, images: dict, heatmaps: dict) -> Path:
    """Write the browser's predictions, the images some model gets wrong and their cached heatmaps."""
    folder = Path(folder)
    table = pd.concat([frame.assign(model=model) for model, frame in predictions.items()], ignore_index=True)
    runs.write_csv(folder / "predictions.csv", table)
    ids = sorted({image_id for _, image_id in misclassified(predictions)})
    shape = np.asarray(next(iter(images.values()))).shape if images else (0, 0)
    write_npz(folder / "images.npz", ids=np.array(ids, dtype=str),
              pixels=stacked([np.asarray(images[i]) for i in ids], shape, np.uint8))
    keys = sorted(heatmaps)
    write_npz(folder / "heatmaps.npz", models=np.array([m for m, _ in keys], dtype=str),
              ids=np.array([i for _, i in keys], dtype=str),
              maps=stacked([heatmaps[k] for k in keys], (HEATMAP_SIZE, HEATMAP_SIZE), np.uint8))
    runs.write_json(folder / "browser.json", {"models": list(predictions), "images": len(ids), "heatmaps": len(keys)})
    return folder


def cached_source(maps: dict):
    """heatmaps(model or 'all models', image id) -> the cached Grad-CAM in [0, 1], or None where none was cached
    (only the class gradcam.heatmap_source explains by default is cached)."""
    def heatmap(name: str, image_id: str, class_index=None):
        found = maps.get((name, image_id)) if class_index is None else None
        return None if found is None else found.astype(np.float32) / 255.0
    return heatmap


def saved_cache(profile: str, root=None) -> Path:
    """The cache folder, refused in one line naming the command that makes it when the chapter has not saved it."""
    folder = cache_folder(profile, root)
    if not (folder / "browser.json").is_file():
        raise FileNotFoundError(f"no misclassified-image browser data in {folder}; run: cxr run {CHAPTER} "
                                f"--profile {profile}")
    return folder


def read_predictions(folder: Path) -> dict:
    """The browser's predictions, model -> frame, in the chapter's order."""
    order = json.loads((Path(folder) / "browser.json").read_text())["models"]
    table = pd.read_csv(Path(folder) / "predictions.csv", dtype={"Image Index": str})
    return {m: table[table["model"] == m].drop(columns="model").reset_index(drop=True) for m in order}


def load_cache(profile: str, root=None):
    """(predictions, images, heatmaps) of a profile's run folder, read without writing anything."""
    folder = saved_cache(profile, root)
    predictions = read_predictions(folder)
    with np.load(folder / "images.npz") as saved:
        images = dict(zip(saved["ids"].tolist(), saved["pixels"]))
    with np.load(folder / "heatmaps.npz") as saved:
        maps = {(m, i): a for m, i, a in zip(saved["models"].tolist(), saved["ids"].tolist(), saved["maps"])}
    return predictions, images, cached_source(maps)


def same_predictions(a: dict, b: dict) -> bool:
    """Same models in the same order, with the same images, labels and probabilities."""
    columns = ["label", "pred", *probability_columns()]
    return list(a) == list(b) and all(
        a[m]["Image Index"].astype(str).tolist() == b[m]["Image Index"].astype(str).tolist()
        and np.allclose(a[m][columns].to_numpy(float), b[m][columns].to_numpy(float), atol=1e-9) for m in a)


def chapter_heatmaps(ch, predictions: dict, images: dict, load_models):
    """The error-analysis chapter's heatmaps for its browser.

    Under `cxr run`: every misclassified image's Grad-CAM, computed now and saved with the chapter's
    results. Read-only in a live front end: the saved ones when they match these predictions, else
    computed on demand and never written. load_models() -> {model: Keras model taking images}.
    """
    if not ch.readonly:
        maps = compute_heatmaps(load_models(), ch.images_for, predictions)
        save_cache(ch.run.path / FOLDER, predictions, images, maps)
        return cached_source(maps)
    folder = cache_folder(ch.profile, ch.runs_root)
    if (folder / "browser.json").is_file() and same_predictions(read_predictions(folder), predictions):
        return load_cache(ch.profile, ch.runs_root)[2]
    return heatmap_source(load_models(), ch.images_for, HEATMAP_SIZE)


# ---------------------------------------------------------------- `cxr browse`

# Jupyter Server's own culling of idle kernels: one whose page never connected (a plain GET, a link preview) or
# whose page went without its shutdown call (a crashed browser) ends after 5 minutes; an open page keeps its own.
CULLING = ["--MappingKernelManager.cull_idle_timeout=300", "--MappingKernelManager.cull_interval=30"]
READY_S = 120  # how long the server may take to answer before `cxr browse` gives up


def server_command(ip: str, port: int, token: str, lab: bool = False) -> list:
    """Voilà on the browse notebook (only its outputs, settings in notebooks/browse/voila.py), or JupyterLab on
    the notebooks folder; both cull idle kernels."""
    bin_dir = Path(sys.executable).parent
    if lab:
        return [str(bin_dir / "jupyter-lab"), str(NOTEBOOK), "--no-browser", f"--ServerApp.ip={ip}",
                f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={NOTEBOOK.parent.parent}", f"--MultiKernelManager.default_kernel_name={KERNEL}",
                "--LabApp.extension_manager=readonly", *CULLING, *(["--allow-root"] if os.geteuid() == 0 else [])]
    return [str(bin_dir / "voila"), str(NOTEBOOK), "--no-browser", f"--Voila.ip={ip}", f"--Voila.port={port}",
            "--Voila.port_retries=0", f"--Voila.token={token}", f"--Voila.config_file_paths={NOTEBOOK.parent}",
            *CULLING]


def address(ip: str, port: int, token: str, lab: bool = False) -> str:
    """The URL to open, token included."""
    path = f"lab/tree/{NOTEBOOK.parent.name}/{NOTEBOOK.name}" if lab else ""
    return f"http://{ip}:{port}/{path}?token={token}"


def server_env(profile: str) -> dict:
    """The server's (and so its kernels') environment: this profile, absolute run and cache folders, our template."""
    cache = os.environ.get("CXR_CACHE_DIR", str(REPO_ROOT / ".cache"))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    jupyter_path = os.pathsep.join(p for p in (str(TEMPLATES), os.environ.get("JUPYTER_PATH")) if p)
    return {**os.environ, PROFILE_ENV: profile, "CXR_RUNS_DIR": str(runs_dir().resolve()),
            "CXR_CACHE_DIR": str(Path(cache).resolve()), "PATH": path, "JUPYTER_PATH": jupyter_path}


def answers(ip: str, port: int) -> bool:
    """Whether the server answers HTTP: its login page, which starts no kernel (any status is an answer)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{ip}:{port}/login", timeout=5).close()
    except OSError as err:  # an HTTPError is an answer; any other, none
        return isinstance(err, urllib.error.HTTPError)
    return True


def wait_until_answering(server: subprocess.Popen, ip: str, port: int) -> None:
    """Return once the server answers; refuse in one line when it stopped or stayed silent for READY_S s."""
    deadline = time.monotonic() + READY_S
    while not answers(ip, port):
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped with status {server.returncode} before answering on port {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer on port {port} within {READY_S} s")
        time.sleep(0.2)


def serve(profile: str = "cpu", port: int = 0, token=None, ip: str = "127.0.0.1", lab: bool = False,
          open_browser: bool = False) -> int:
    """`cxr browse`: check the run folder, start the server, print the address once it answers; one Ctrl-C (or
    SIGTERM) stops the server and its kernels. Returns the exit status."""
    from cxrlib.core.manifest import profile_settings

    profile_settings(profile)
    folder = saved_cache(profile)
    port, token = port or free_port(ip), token or secrets.token_urlsafe(16)
    # no terminal on the server's stdin: Jupyter then stops on the first SIGINT instead of asking to confirm
    server = subprocess.Popen(server_command(ip, port, token, lab), env=server_env(profile), stdin=subprocess.DEVNULL)
    for stop in (signal.SIGINT, signal.SIGTERM):  # either stops the server, even where a shell ignored SIGINT
        signal.signal(stop, signal.default_int_handler)
    try:
        wait_until_answering(server, ip, port)
        url = address(ip, port, token, lab)
        step = "; in JupyterLab, Run > Run All Cells shows the browser" if lab else ""
        print(f"cxr browse: {'JupyterLab' if lab else 'Voila'} on the misclassified images of {folder.parent.parent}\n"
              f"open {url}\n(Ctrl-C stops the server{step})", flush=True)
        if open_browser:
            webbrowser.open(url)
        return server.wait()
    except KeyboardInterrupt:
        return stop_server(server)
    except RuntimeError as err:
        stop_server(server)
        print(f"cxr browse: {err}", file=sys.stderr)
        return 1


def stop_server(server: subprocess.Popen) -> int:
    """SIGTERM (the server shuts its kernels down), SIGKILL after 30 s; 130, the status of an interrupted command."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    return 130


def browser(profile=None, runs_root=None, per_page: int = 3):
    """The misclassified-image browser of a profile's run folder (default: the profile `cxr browse` serves, else
    cpu), from what the error-analysis chapter saved there: predictions, images and cached Grad-CAM. Reads only."""
    from cxrlib.present.widgets import MisclassifiedBrowser

    profile = profile or os.environ.get(PROFILE_ENV) or "cpu"
    predictions, images, heatmaps = load_cache(profile, runs_root)
    folder = cache_folder(profile, runs_root).parent.parent
    return MisclassifiedBrowser(predictions, images, heatmaps, per_page,
                                title=f"Misclassified test images, profile {profile} ({folder})")
