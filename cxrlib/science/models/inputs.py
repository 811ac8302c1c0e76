"""The models' first layer: 8-bit grey in, three float channels out, computed on the device.

The tf.data pipeline hands over uint8 (B, H, W, 1) batches, 12 times fewer bytes than float32 RGB; the
cast and the channel copy happen here, inside the model. The layer has no weights, so parameter counts
are those of the report. It also accepts (B, H, W) grey and (B, H, W, 3) images, uint8 or float in [0, 255].
"""
from __future__ import annotations

import keras
from keras import layers, ops

from cxrlib.core.config import CLASSES


@keras.saving.register_keras_serializable(package="cxrlib")
class ThreeChannels(keras.layers.Layer):
    """Grey (or already RGB) images in [0, 255] to three float channels in the layer's compute dtype."""

    def call(self, images):
        """Cast, add a channel axis to (B, H, W) input, and repeat a single channel three times."""
        x = ops.cast(images, self.compute_dtype)
        if len(x.shape) == 3:
            x = ops.expand_dims(x, -1)
        if x.shape[-1] == 3:
            return x
        if x.shape[-1] != 1:
            raise ValueError(f"ThreeChannels takes 1 or 3 channels, got shape {tuple(x.shape)}")
        return ops.repeat(x, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        """Same batch and spatial size, three channels."""
        return (input_shape[0], *tuple(input_shape[1:3]), 3)


def grey_input(size: int, name: str = "image"):
    """(Input layer, its three-channel float tensor) for size x size grey images in [0, 255].

    The Input is float32 so any caller's uint8 or float images are cast on the device, exactly;
    pipelines should still send uint8.
    """
    inputs = keras.Input(shape=(size, size, 1), name=name)
    return inputs, ThreeChannels(name="three_channels")(inputs)


def softmax_head():
    """The 4-way softmax every model ends with: named 'classifier' (predictions take exact logits from it) and
    computed in float32 under mixed precision."""
    return layers.Dense(len(CLASSES), activation="softmax", name="classifier", dtype="float32")
