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


BACKBONES = {
    "vgg16": BackboneSpec("VGG16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16",
                          "caffe", ((256, 0.5),), ("block5_conv1", "block3_conv1")),
    "resnet152": BackboneSpec("ResNet152", "ResNet152", "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
                              "resnet", "caffe", ((64, 0.25),), ("conv5_block3_3_conv", "conv5_block3_1_conv")),
    "resnet50": BackboneSpec("ResNet50", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             "resnet", "caffe", ((64, 0.25),), ("conv5_block3_3_conv",)),
    "chexnet": BackboneSpec("CheXNet (DenseNet121)", "DenseNet121",
                            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet", "torch",
                            ((64, 0.0), (64, 0.0)), ("conv5_block15_0_bn", "conv4_block1_0_bn")),
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


def load_chexnet_weights(model: keras.Model, path) -> int:
    """Load a CheXNet-Keras file (DenseNet121 with a 14-class top, Keras 2 HDF5) by layer name.

    The 14-class top is skipped; returns how many of the backbone's layers received weights.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CheXNet weights file {path} does not exist")
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        names = {n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]}
        legacy_h5_format.load_weights_from_hdf5_group_by_name(group, model, skip_mismatch=True)
    return sum(1 for layer in model.layers if layer.name in names and layer.weights)


def chexnet_weights_path(given=None):
    """The CheXNet file named by the chapter parameter or CXR_CHEXNET_WEIGHTS, if any."""
    value = given or os.environ.get("CXR_CHEXNET_WEIGHTS")
    return Path(value).expanduser() if value else None


def pretrained_backbone(name: str, size: int, allow_random: bool, chexnet_file=None):
    """(backbone, description of its weights, whether they are pretrained).

    Raises WeightsUnavailable when no pretrained weights exist and random ones are not allowed.
    """
    chexnet = chexnet_weights_path(chexnet_file) if name == "chexnet" else None
    if chexnet:
        model = backbone(name, size)
        loaded = load_chexnet_weights(model, chexnet)
        return model, f"CheXNet ({chexnet}, {loaded} layers loaded)", True
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


def full_model(name: str, base: keras.Model, top: keras.Model, size: int) -> keras.Model:
    """Image in [0, 255] -> preprocessing -> backbone (nested, kept in inference mode) -> head."""
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = inputs
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
