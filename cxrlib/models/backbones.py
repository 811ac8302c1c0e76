"""Pretrained backbones of the report's section 4: VGG16, ResNet152, ResNet50 and CheXNet (DenseNet121).

Each backbone gets its own input preprocessing, the report's classification head, and fine tuning
by unfreezing from a named layer. Weights are never fetched silently: ImageNet weights come from
Keras's cache (~/.keras/models) or its download, CheXNet weights from a file the user names; where
none can be had, the chapter says so and every result is labelled "no pretrained weights".
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from cxrlib.config import CLASSES

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
# ImageNet means (BGR) of the 'caffe' mode; our images are gray, so R=G=B and the channel flip is moot.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were required but cannot be had on this machine."""


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's constructor, weights file, preprocessing, report head and unfreeze points."""

    title: str
    application: str
    weights_file: str
    weights_folder: str
    preprocessing: str
    head: tuple  # (units, dropout) per dense layer, after global average pooling
    unfreeze: tuple  # layer names, report order; the last is the report's best
    gradcam_layer: str = ""  # Grad-CAM's target: the last convolutional feature map before pooling
    fine_tune_augment: bool = False  # whether the report fine-tuned from a model trained with augmentation


BACKBONES = {
    "vgg16": BackboneSpec("VGG16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16",
                          "caffe", ((256, 0.5),), ("block5_conv1", "block3_conv1"),
                          gradcam_layer="block5_conv3", fine_tune_augment=True),  # 4.1.3: from 4.1.3.1 (with DA)
    "resnet152": BackboneSpec("ResNet152", "ResNet152", "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
                              "resnet", "caffe", ((64, 0.25),), ("conv5_block3_3_conv", "conv5_block3_1_conv"),
                              gradcam_layer="conv5_block3_out"),  # 4.2.3: from 4.2.3.1 (no DA)
    "resnet50": BackboneSpec("ResNet50", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             "resnet", "caffe", ((64, 0.25),), ("conv5_block3_3_conv",),
                             gradcam_layer="conv5_block3_out"),  # 4.2.4: from 4.2.4.1 (no DA)
    "chexnet": BackboneSpec("CheXNet (DenseNet121)", "DenseNet121",
                            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet", "torch",
                            ((64, 0.0), (64, 0.0)), ("conv5_block15_0_bn", "conv4_block1_0_bn"),
                            gradcam_layer="relu"),  # 4.3.2: from 4.3.1.3 (no DA)
}


def spec(name: str) -> BackboneSpec:
    """Look a backbone up, naming the known ones on a typo."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


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


def imagenet_weights(name: str):
    """(weights argument for keras.applications, human description); None when unavailable."""
    cached = keras_cache_file(name)
    if cached.is_file():
        return str(cached), f"ImageNet ({cached})"
    if online():
        return "imagenet", "ImageNet (downloaded by Keras)"
    s = spec(name)
    return None, (f"no pretrained weights: ImageNet file not found and no network; place "
                  f"{s.weights_file} (from {KERAS_WEIGHTS_URL}/{s.weights_folder}/{s.weights_file}) in {cached.parent}/")


def preprocessing(kind: str):
    """The backbone's own input scaling as built-in (serialisable) layers, for inputs in [0, 255]."""
    if kind == "caffe":
        return [layers.Normalization(mean=CAFFE_MEAN_BGR, variance=(1.0, 1.0, 1.0), name="caffe_preprocess")]
    if kind == "torch":
        return [layers.Rescaling(1.0 / 255, name="to_unit"),
                layers.Normalization(mean=TORCH_MEAN, variance=[s * s for s in TORCH_STD], name="torch_preprocess")]
    raise ValueError(f"unknown preprocessing {kind!r}")


def backbone(name: str, size: int, weights=None) -> keras.Model:
    """The convolutional base without its ImageNet top."""
    application = getattr(keras.applications, spec(name).application)
    return application(include_top=False, weights=weights, input_shape=(size, size, 3))


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


def keras3_name(name: str) -> str:
    """Keras 2 wrote DenseNet's stem as conv1/conv and conv1/bn; Keras 3 forbids '/' and says conv1_conv."""
    return name.replace("/", "_")


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
                arrays = [np.asarray(group[layer][w]) for w, o in zip(names, owners) if o == owner]
                if arrays:
                    entries.append((owner, arrays))
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
    by_name = {keras3_name(name): arrays for name, arrays in entries}
    found = [layer for layer in targets if layer.name in by_name]
    if len(found) == len(targets):
        _assign(found, [by_name[layer.name] for layer in found], path)
        return WeightsLoad(len(targets), len(targets), "name")
    if same_architecture(entries, targets):
        _assign(targets, [arrays for _, arrays in entries[:len(targets)]], path)
        return WeightsLoad(len(targets), len(targets), "order")
    missing = tuple(layer.name for layer in targets if layer.name not in by_name)
    if not allow_partial:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise WeightsMismatch(f"CheXNet file {path} has no weights for {len(missing)} of the {len(targets)} "
                              f"weighted layers of {model.name}: {shown}; allow a partial load to keep random "
                              f"weights there")
    _assign(found, [by_name[layer.name] for layer in found], path)
    return WeightsLoad(len(found), len(targets), "name", missing)


def same_architecture(entries, targets) -> bool:
    """Whether the file's weighted layers, in order, have exactly the backbone's shapes (a top may follow)."""
    if len(entries) < len(targets):
        return False
    return all([tuple(a.shape) for a in arrays] == [tuple(w.shape) for w in layer.weights]
               for (_, arrays), layer in zip(entries, targets))


def chexnet_weights_path(given=None):
    """The CheXNet file named by the chapter parameter or CXR_CHEXNET_WEIGHTS, if any."""
    value = given or os.environ.get("CXR_CHEXNET_WEIGHTS")
    return Path(value).expanduser() if value else None


def pretrained_backbone(name: str, size: int, allow_random: bool, chexnet_file=None, allow_partial: bool = False):
    """(backbone, description of its weights, whether they are pretrained).

    Raises WeightsUnavailable when no pretrained weights exist and random ones are not allowed, and
    WeightsMismatch when a CheXNet file leaves weighted layers without weights (unless allow_partial).
    """
    chexnet = chexnet_weights_path(chexnet_file) if name == "chexnet" else None
    if chexnet:
        model = backbone(name, size)
        load = load_chexnet_weights(model, chexnet, allow_partial)
        partial = " (PARTIAL: the rest keep random weights)" if load.missing else ""
        return model, f"CheXNet ({chexnet}; {load.text()}{partial})", True
    weights, text = imagenet_weights(name)
    if name == "chexnet":
        text = "no CheXNet file given (CHEXNET_WEIGHTS or CXR_CHEXNET_WEIGHTS), so DenseNet121 with " + (
            text if weights else "no pretrained weights")
    if weights is None and not allow_random:
        raise WeightsUnavailable(text + ". Set ALLOW_RANDOM_WEIGHTS=True to run without them.")
    return backbone(name, size, weights), text, weights is not None


def head(name: str, feature_shape) -> keras.Model:
    """The report's head on the backbone's feature map: global average pooling, dense layers, softmax."""
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = layers.GlobalAveragePooling2D()(inputs)
    for units, dropout in spec(name).head:
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="classifier", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{name}_head")


def full_model(name: str, base: keras.Model, top: keras.Model, size: int, augment: bool = False) -> keras.Model:
    """Grey image in [0, 255] -> three channels -> [augmentation] -> preprocessing -> backbone -> head.

    The backbone is nested and kept in inference mode.
    """
    from cxrlib.data.pipeline import augmentation
    from cxrlib.models.inputs import grey_input

    inputs, x = grey_input(size)
    x = augmentation()(x) if augment else x
    for layer in preprocessing(spec(name).preprocessing):
        x = layer(x)
    x = base(x, training=False)
    return keras.Model(inputs, top(x), name=name)


def unfreeze_from(base: keras.Model, layer_name: str) -> int:
    """Make layer_name and every later layer trainable, the earlier ones frozen; return how many thawed."""
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ValueError(f"{base.name} has no layer {layer_name!r}")
    start = names.index(layer_name)
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start
    return len(names) - start
