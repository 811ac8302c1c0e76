"""The report's two CNNs trained from scratch (sections 3.1 and 3.2), layer for layer."""
from __future__ import annotations

import keras
from keras import layers

from cxrlib.science.models.fused import stem
from cxrlib.science.models.inputs import softmax_head


def _conv(x, filters, kernel, strides=1):
    """ReLU convolution with 'same' padding, the only kind these nets use."""
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu")(x)


def _pool1(x):
    """2x2 max-pool with stride 1; at small profile sizes a 1x1 map is padded instead of failing."""
    return layers.MaxPooling2D(2, strides=1, padding="same" if x.shape[1] < 2 else "valid")(x)


def first_cnn(image_size: int = 250, resize_to: int = 227, resizer: bool = False,
              augment: bool = False) -> keras.Model:
    """Section 3.1: thirteen convolutions, a 128-unit dense layer; 4,741,188 parameters at 227 px.

    Its Flatten makes the count depend on the input size: 4,741,188 holds for 227 px only.
    """
    inputs, x = stem(image_size, resize_to, resizer, augment)
    for kernel in (11, 11, 5):
        x = _conv(x, 32, kernel)
    x = layers.MaxPooling2D(2)(x)
    for filters, kernel in ((64, 5), (64, 5), (128, 3), (128, 3)):
        x = _conv(x, filters, kernel, strides=2)
        x = _pool1(_conv(x, filters, kernel))
    x = _conv(x, 256, 3)
    x = _pool1(_conv(x, 256, 3))
    x = _pool1(_conv(x, 256, 3))
    x = _conv(x, 512, 3)
    x = layers.MaxPooling2D(2, strides=1, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, softmax_head()(x), name="cnn_first")


def second_cnn(image_size: int = 250, resize_to: int = 227, resizer: bool = False,
               augment: bool = False, mlp=()) -> keras.Model:
    """Section 3.2: filters doubling 32 to 512 while kernels shrink; 2,859,588 parameters.

    mlp, a list of (units, dropout), inserts the dense layers that Hyperband tunes.
    """
    inputs, x = stem(image_size, resize_to, resizer, augment)
    for filters, kernel in ((32, 11), (64, 5), (128, 5), (256, 5), (256, 3)):
        x = _conv(x, filters, kernel)
        x = layers.MaxPooling2D(2, padding="same" if x.shape[1] < 2 else "valid")(x)
    x = _conv(x, 512, 3)
    x = layers.GlobalMaxPooling2D()(x)
    for units, dropout in mlp:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, softmax_head()(x), name="cnn_second")
