"""Pretrained weights, found and loaded, never fetched silently: ImageNet weights from Keras's cache
(~/.keras/models) or its download, CheXNet weights from a file the user names. Where none can be had, the chapter
says so and every result is labelled "no pretrained weights".
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cxrlib.present.labels import NO_WEIGHTS
from cxrlib.science.models.backbones import backbone, spec


KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were required but cannot be had on this machine."""


def keras_cache_file(name: str) -> Path:
    """Where Keras keeps a downloaded ImageNet weights file."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / spec(name).weights_file


def online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """Whether the weights server answers within seconds (never when CXR_OFFLINE is set)."""
    return False if os.environ.get("CXR_OFFLINE") else _reachable(host, timeout)


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout: float) -> bool:
    """One connection attempt per process, however many backbones ask."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Weights:
    """Where a backbone's starting weights come from, as fields: whether pretrained, what a page says (no
    folders, no instructions) and what the log says (where to place a missing file)."""

    pretrained: bool
    short: str
    long: str


def imagenet_weights(name: str) -> tuple:
    """(weights argument for keras.applications, Weights); the argument is None when none can be had."""
    cached = keras_cache_file(name)
    if cached.is_file():
        return str(cached), Weights(True, "ImageNet (Keras's cache)", f"ImageNet ({cached})")
    if online():
        return "imagenet", Weights(True, "ImageNet (downloaded by Keras)", "ImageNet (downloaded by Keras)")
    s = spec(name)
    return None, Weights(False, f"{NO_WEIGHTS} (ImageNet file not found, offline)",
                         f"{NO_WEIGHTS}: ImageNet file not found and no network; place {s.weights_file} (from "
                         f"{KERAS_WEIGHTS_URL}/{s.weights_folder}/{s.weights_file}) in {cached.parent}/")


def planned_weights(name: str, chexnet_file=None) -> Weights:
    """Before anything loads: the weights a backbone will start from."""
    chexnet = chexnet_weights_path(chexnet_file) if name == "chexnet" else None
    if chexnet:
        return Weights(True, f"CheXNet ({chexnet.name})", f"CheXNet file {chexnet}")
    return without_chexnet(name, imagenet_weights(name)[1])


def without_chexnet(name: str, imagenet: Weights) -> Weights:
    """DenseNet121 without a CheXNet file falls back to ImageNet (or nothing), and says so; others as they are."""
    if name != "chexnet":
        return imagenet
    given = "no CheXNet file given (CHEXNET_WEIGHTS or CXR_CHEXNET_WEIGHTS), so DenseNet121 with "
    if not imagenet.pretrained:
        return Weights(False, f"{NO_WEIGHTS} (no CheXNet file given)", given + NO_WEIGHTS)
    return Weights(True, "no CheXNet file given, so " + imagenet.short, given + imagenet.long)


class WeightsMismatch(ValueError):
    """A weights file does not fit the backbone: layers missing, or shapes that differ."""


@dataclass(frozen=True)
class WeightsLoad:
    """How a weights file filled a backbone: weighted layers loaded out of how many, and how they were matched."""

    loaded: int
    total: int
    method: str  # "name" (Keras 2 spellings mapped to Keras 3) or "order" (a whole model of the same architecture)
    missing: tuple = ()

    def text(self) -> str:
        """For the provenance line."""
        return f"{self.loaded} of {self.total} weighted layers loaded by {self.method}"


def _text(value) -> str:
    """h5py attributes come back as bytes or str depending on who wrote them."""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_h5_layers(path: Path) -> list:
    """[(layer name, [arrays])] of every layer with weights, in the file's (topological) order.

    A nested model's group (weights of several layers) is split by the layer part of each weight name.
    """
    import h5py

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise WeightsMismatch(f"{path} is not a Keras HDF5 weights file (it has no layer_names attribute)")
        entries = []
        for layer in map(_text, group.attrs["layer_names"]):
            names = [_text(w) for w in group[layer].attrs.get("weight_names", [])]
            owners = [w.rsplit("/", 1)[0] if "/" in w else layer for w in names]
            if len(set(owners)) <= 1 or layer in owners:
                owners = [layer] * len(names)
            for owner in dict.fromkeys(owners):
                entries.append((owner, [np.asarray(group[layer][w]) for w, o in zip(names, owners) if o == owner]))
    return entries


def _assign(layers_, arrays_per_layer, path) -> None:
    """Set each layer's weights, refusing (with the layer's name) any count or shape that differs."""
    for layer, arrays in zip(layers_, arrays_per_layer):
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise WeightsMismatch(f"layer {layer.name} expects weights of shapes {want}, but {path} holds {got}")
        layer.set_weights(arrays)


def load_chexnet_weights(model: keras.Model, path, allow_partial: bool = False) -> WeightsLoad:
    """Load a CheXNet-Keras file (DenseNet121 with a 14-class top, often written by Keras 2) into a backbone.

    Layers are matched by name after mapping Keras 2 spellings to Keras 3 ones; every weighted layer
    must receive weights, unless allow_partial. A whole model of the same architecture whose names
    differ is loaded in topological order. The 14-class top is never loaded.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CheXNet weights file {path} does not exist")
    entries = read_h5_layers(path)
    targets = [layer for layer in model.layers if layer.weights]
    # Keras 2 wrote DenseNet's stem as conv1/conv and conv1/bn; Keras 3 forbids '/' and says conv1_conv
    by_name = {name.replace("/", "_"): arrays for name, arrays in entries}
    found = [layer for layer in targets if layer.name in by_name]
    if len(found) < len(targets) and same_architecture(entries, targets):
        _assign(targets, [arrays for _, arrays in entries[:len(targets)]], path)
        return WeightsLoad(len(targets), len(targets), "order")
    missing = tuple(layer.name for layer in targets if layer.name not in by_name)
    if missing and not allow_partial:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise WeightsMismatch(f"CheXNet file {path} has no weights for {len(missing)} of the {len(targets)} "
                              f"weighted layers of {model.name}: {shown}; allow a partial load to keep random "
                              f"weights there")
    _assign(found, [by_name[layer.name] for layer in found], path)
    return WeightsLoad(len(found), len(targets), "name", missing)


def same_architecture(entries, targets) -> bool:
    """Whether the file's weighted layers, in order, have exactly the backbone's shapes (a top may follow)."""
    shapes_match = ([tuple(a.shape) for a in arrays] == [tuple(w.shape) for w in layer.weights]
                    for (_, arrays), layer in zip(entries, targets))
    return len(entries) >= len(targets) and all(shapes_match)


def chexnet_weights_path(given=None):
    """The CheXNet file named by the chapter parameter or CXR_CHEXNET_WEIGHTS, if any."""
    value = given or os.environ.get("CXR_CHEXNET_WEIGHTS")
    return Path(value).expanduser() if value else None


def pretrained_backbone(name: str, size: int, allow_random: bool, chexnet_file=None, allow_partial: bool = False):
    """(backbone, Weights it started from).

    Raises WeightsUnavailable when no pretrained weights exist and random ones are not allowed, and
    WeightsMismatch when a CheXNet file leaves weighted layers without weights (unless allow_partial).
    """
    chexnet = chexnet_weights_path(chexnet_file) if name == "chexnet" else None
    if chexnet:
        model = backbone(name, size)
        load = load_chexnet_weights(model, chexnet, allow_partial)
        partial = " (PARTIAL: the rest keep random weights)" if load.missing else ""
        return model, Weights(True, f"CheXNet ({chexnet.name}; {load.text()}{partial})",
                              f"CheXNet ({chexnet}; {load.text()}{partial})")
    argument, imagenet = imagenet_weights(name)
    used = without_chexnet(name, imagenet)
    if argument is None and not allow_random:
        raise WeightsUnavailable(used.long + ". Set ALLOW_RANDOM_WEIGHTS=True to run without them.")
    return backbone(name, size, argument), used
