"""The learnable resizer of Talebi & Milanfar (2021), as in the Keras example.

Unlike the example, the r residual blocks are applied one after another (the example
feeds the bottleneck to every block, so only the last one counts).
"""
from __future__ import annotations

import keras
from keras import layers


def conv_block(x, filters: int, kernel_size: int, activation: bool = True):
    """Convolution, batch normalisation and LeakyReLU(0.2): the resizer's unit."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.LeakyReLU(negative_slope=0.2)(x) if activation else x


def residual_block(x, filters: int):
    """Two 3x3 conv blocks with an identity skip."""
    y = conv_block(x, filters, 3)
    y = conv_block(y, filters, 3, activation=False)
    return layers.Add()([x, y])


def learnable_resizer(size: int = 227, filters: int = 16, blocks: int = 1,
                      interpolation: str = "bilinear", name: str = "learnable_resizer") -> keras.Model:
    """Resize any image to size x size, adding a learnt residual to a plain bilinear resize."""
    inputs = keras.Input(shape=(None, None, 3))
    naive = layers.Resizing(size, size, interpolation=interpolation)(inputs)
    x = layers.Conv2D(filters, 7, padding="same")(inputs)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = layers.Conv2D(filters, 1, padding="same")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    x = layers.BatchNormalization()(x)
    x = bottleneck = layers.Resizing(size, size, interpolation=interpolation)(x)
    for _ in range(blocks):
        x = residual_block(x, filters)
    x = conv_block(x, filters, 3, activation=False)
    x = layers.Add()([bottleneck, x])
    x = layers.Conv2D(3, 7, padding="same")(x)
    return keras.Model(inputs, layers.Add()([naive, x]), name=name)
