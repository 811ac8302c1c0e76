"""Pretrained backbones of the report's section 4: VGG16, ResNet152, ResNet50 and CheXNet (DenseNet121).

Each backbone gets its own input preprocessing, the report's classification head, and fine tuning
by unfreezing from a named layer. Where their pretrained weights come from is cxrlib.machinery.weights'.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from cxrlib.science.models.inputs import grey_input, softmax_head

# ImageNet means (BGR) of the 'caffe' mode; our images are gray, so R=G=B and the channel flip is moot.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def head(name: str, feature_shape) -> keras.Model:
    """The report's head on the backbone's feature map: global average pooling, dense layers, softmax."""
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = layers.GlobalAveragePooling2D()(inputs)
    for units, dropout in spec(name).head:
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = softmax_head()(x)
    return keras.Model(inputs, outputs, name=f"{name}_head")


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
