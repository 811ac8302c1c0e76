"""Pretrained backbones of the report's section 4: VGG16, ResNet152, ResNet50 and CheXNet (DenseNet121).

Each backbone gets its own input preprocessing, the report's classification head, and fine tuning
by unfreezing from a named layer, as cxrlib.core.backbones states them. Where their pretrained weights come
from is cxrlib.machinery.weights'.
"""
from __future__ import annotations

import keras
from keras import layers

from cxrlib.core.backbones import Head, spec
from cxrlib.core.manifest import check
from cxrlib.science.models.inputs import grey_input, softmax_head

# ImageNet means (BGR) of the 'caffe' mode; our images are gray, so R=G=B and the channel flip is moot.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def fine_tune_points(name: str, choice: str) -> tuple:
    """Which unfreeze points to train (the manifest's fine_tune): none, the first (cheapest) or all of the report's."""
    points = spec(name).unfreeze
    return {"none": (), "first": points[:1], "all": points}[check("fine_tune", choice)]


def fine_tune_augments(name: str, choice: str) -> bool:
    """Whether fine tuning augments (the manifest's fine_tune_augment): as the report did for this backbone
    ('report': where its kept head was trained with augmentation), 'always' or 'never'."""
    return {"report": spec(name).head.augment, "always": True, "never": False}[check("fine_tune_augment", choice)]


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


def head(name: str, feature_shape, variant: Head | None = None) -> keras.Model:
    """A head of the report on the backbone's feature map (default: the one it kept): flatten or global average
    pooling, dense layers with their dropout, softmax. A pooled head takes maps of any height and width, so it
    trains on pooled (1 x 1) features of augmented images as well as on whole maps."""
    variant = variant or spec(name).head
    channels = tuple(feature_shape)[-1]
    shape = tuple(feature_shape) if variant.pool == "flatten" else (None, None, channels)
    inputs = keras.Input(shape=shape, name="features")
    x = layers.Flatten()(inputs) if variant.pool == "flatten" else layers.GlobalAveragePooling2D()(inputs)
    for units, dropout in variant.dense:
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, softmax_head()(x), name=f"{name}_head")


def full_model(name: str, base: keras.Model, top: keras.Model, size: int, augment: bool = False) -> keras.Model:
    """Grey image in [0, 255] -> three channels -> [augmentation] -> preprocessing -> backbone -> head.

    The backbone is nested and kept in inference mode.
    """
    from cxrlib.science.models.augment import augmentation

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
