"""The report's pretrained backbones (section 4) as facts: constructor, weights file, preprocessing, the flow of
heads, the head kept for fine tuning, unfreeze points and Grad-CAM's layer. The one place their names are written:
the manifest offers them as the parameter `backbones`, and cxrlib.science.models.backbones builds them."""
from __future__ import annotations

from dataclasses import dataclass


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
