"""The report's fused network (section 3.4, after Pang et al. 2018) and its 'base' twin.

At the report's size (input 250, resizer output 227) the summary is reproduced layer by
layer: 9,211,847 parameters, 128 of them non-trainable. Other sizes keep the same layers;
the pools that align the three branches are computed so that their outputs match.
"""
from __future__ import annotations

import keras
from keras import layers

from cxrlib.science.models.augment import augmentation
from cxrlib.science.models.inputs import grey_input, softmax_head
from cxrlib.science.models.resizer import learnable_resizer


def pool_to(x, target: int, name=None):
    """Max-pool a square map down to target x target (stride = size // target)."""
    size = x.shape[1]
    stride = max(1, size // target)
    return layers.MaxPooling2D(pool_size=size - (target - 1) * stride, strides=stride, name=name)(x)


def stem(image_size: int, resize_to: int, resizer: bool, augment: bool, contrast: bool = False):
    """Grey input made three float channels on the device, rescaling, optional augmentation, then resize."""
    inputs, x = grey_input(image_size)
    x = layers.Rescaling(1.0 / 255)(x)
    if augment:
        x = augmentation(contrast, value_range=(0.0, 1.0))(x)  # the rescaled images run from 0 to 1
    x = learnable_resizer(resize_to)(x) if resizer else layers.Resizing(resize_to, resize_to)(x)
    return inputs, x


def classifier(x, dense_units: int, dropout: float = 0.0):
    """Two ReLU dense layers and the 4-way softmax."""
    for _ in range(2):
        x = layers.Dense(dense_units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return softmax_head()(x)


def fused_net(image_size: int = 250, resize_to: int = 227, resizer: bool = True, augment: bool = False,
              dense_units: int = 2048, fused: bool = True, contrast: bool = False) -> keras.Model:
    """Five convolutions; shallow (conv1, conv2) and deep (conv5) maps pooled, concatenated, classified.

    fused=False gives the report's 'base' model: only the last convolution reaches the classifier.
    """
    inputs, x = stem(image_size, resize_to, resizer, augment, contrast)
    x = layers.Conv2D(96, 11, strides=4, activation="relu")(x)
    pool1 = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.LayerNormalization()(pool1)
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    pool2 = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.LayerNormalization()(pool2)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="last_conv")(x)
    deep = layers.MaxPooling2D(3, strides=2)(x) if x.shape[1] >= 3 else x
    if fused:
        target = deep.shape[1]
        deep = layers.Concatenate()([pool_to(pool1, target), pool_to(pool2, target), deep])
    x = layers.GlobalAveragePooling2D()(deep)
    name = "fused" if fused else "base"
    return keras.Model(inputs, classifier(x, dense_units), name=name)
