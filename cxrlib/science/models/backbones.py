"""Pretrained backbones of the report's section 4: VGG16, ResNet152, ResNet50 and CheXNet (DenseNet121).

Each backbone gets its own input preprocessing, the report's classification head, and fine tuning
by unfreezing from a named layer. Where their pretrained weights come from is cxrlib.machinery.weights'.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from cxrlib.core.manifest import check
from cxrlib.science.models.inputs import grey_input, softmax_head

# ImageNet means (BGR) of the 'caffe' mode; our images are gray, so R=G=B and the channel flip is moot.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Head:
    """One head of the report's feature-extraction flow (sections 4.x.1): its section, flatten or global average
    pooling, (units, dropout) per dense layer, and whether it trained on augmented images."""

    section: str
    pool: str  # "flatten" or "gap"
    dense: tuple
    augment: bool = False


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's constructor, weights file, preprocessing, report heads and unfreeze points."""

    title: str
    application: str
    weights_file: str
    weights_folder: str
    preprocessing: str
    heads: tuple  # the report's flow of heads (Head), in its order
    kept: str  # the section of the head the report fine-tuned from
    unfreeze: tuple  # layer names, shallowest first; the last is the deepest the report tried
    gradcam_layer: str = ""  # Grad-CAM's target: the last convolutional feature map before pooling

    @property
    def head(self) -> Head:
        """The head the report kept and fine-tuned from."""
        return next(h for h in self.heads if h.section == self.kept)


BACKBONES = {
    "vgg16": BackboneSpec("VGG16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16", "caffe",
                          (Head("4.1.1.1", "flatten", ((256, 0),)), Head("4.1.1.2", "flatten", ((256, 0.5),)),
                           Head("4.1.1.3", "gap", ((256, 0.5),)), Head("4.1.1.4", "gap", ((256, 0.5),), True)),
                          "4.1.1.4", ("block5_conv1", "block3_conv1"),  # 4.1.3.2-3: from 4.1.3.1 (with DA)
                          gradcam_layer="block5_conv3"),
    "resnet152": BackboneSpec("ResNet152", "ResNet152", "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
                              "resnet", "caffe",
                              (Head("4.2.1.1", "gap", ((256, 0.5),)), Head("4.2.1.2", "gap", ((64, 0.25),)),
                               Head("4.2.1.3", "gap", ((64, 0.33),), True)),
                              # 4.2.2-3, from 4.2.1.2 (no DA); the report counts weighted layers: conv4_block32_1_conv
                              # starts its "last 50 layers", conv4_block15_2_conv its "last 150 layers" (4.2.3.4)
                              "4.2.1.2", ("conv5_block3_3_conv", "conv5_block3_1_conv", "conv4_block32_1_conv",
                                          "conv4_block15_2_conv"), gradcam_layer="conv5_block3_out"),
    "resnet50": BackboneSpec("ResNet50", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             "resnet", "caffe", (Head("4.2.4.1", "gap", ((64, 0.25),)),), "4.2.4.1",
                             ("conv5_block3_3_conv",), gradcam_layer="conv5_block3_out"),  # 4.2.4.2 (no DA)
    "chexnet": BackboneSpec("CheXNet (DenseNet121)", "DenseNet121",
                            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet", "torch",
                            (Head("4.3.1.1", "flatten", ((64, 0),)), Head("4.3.1.2", "gap", ((64, 0),)),
                             Head("4.3.1.3", "gap", ((64, 0), (64, 0)))),
                            "4.3.1.3", ("conv5_block15_0_bn", "conv4_block1_0_bn"),  # 4.3.2-3: from 4.3.1.3 (no DA)
                            gradcam_layer="relu"),
}


def spec(name: str) -> BackboneSpec:
    """Look a backbone up, naming the known ones on a typo."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


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
