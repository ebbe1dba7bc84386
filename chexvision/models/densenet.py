"""DenseNet-121 for one-channel chest X-rays, optionally from torchvision's ImageNet weights (as in CheXNet).

Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017); Rajpurkar et al., "CheXNet" (2017). The
feature extractor is torchvision `models/densenet.py` (so its released weights load directly); the RGB stem is
adapted to one channel by summing the ImageNet conv0 filters over RGB (timm `adapt_input_conv`).

Full size (growth 32, blocks 6-12-24-16, 64 initial features, in_chans 1) is 7,480,079 parameters:
6,947,584 in the features (torchvision's 6,953,856 less 6,272 for the two dropped input channels of
conv0), 524,800 in the Linear(1024, 512) neck and 7,695 in the two heads. (The design's ~7.49 M counted a
three-channel stem: 7,486,351.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.densenet import DenseNet as _TorchvisionDenseNet

from chexvision.errors import BadInputError
from chexvision.labels import NUM_LABELS
from chexvision.models.heads import CheXModel, DualHead
from chexvision.models.registry import ModelInfo
from chexvision.models.weights import (
    densenet121_imagenet_state_dict,
    load_features_state_dict,
    read_state_dict,
)

__all__ = ["MODEL_INFO", "DenseNet", "densenet"]

_DENSENET121: dict[str, object] = {
    "growth_rate": 32,
    "block_config": (6, 12, 24, 16),
    "num_init_features": 64,
}


class DenseNet(CheXModel):
    """torchvision DenseNet features (conv0 ... norm5) + ReLU, then the shared 512-d neck and two heads."""

    def __init__(
        self,
        *,
        growth_rate: int = 32,  # channels each dense layer adds
        block_config: Sequence[int] = (6, 12, 24, 16),  # dense layers per block (121 layers in all)
        num_init_features: int = 64,  # stem width
        bn_size: int = 4,  # bottleneck width multiplier inside a dense layer
        in_chans: int = 1,  # grayscale X-rays
        drop_rate: float = 0.3,  # dropout after the neck
        memory_efficient: bool = False,  # checkpoint dense layers: less memory, ~20% slower
        num_classes: int = NUM_LABELS,
    ) -> None:
        super().__init__()
        reference = _TorchvisionDenseNet(
            growth_rate=growth_rate,
            block_config=tuple(block_config),
            num_init_features=num_init_features,
            bn_size=bn_size,
            memory_efficient=memory_efficient,
        )
        self.features = reference.features
        if in_chans != 3:
            self.features.conv0 = nn.Conv2d(in_chans, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.features.conv0.weight)  # torchvision's init for its convs
        self.in_chans = in_chans
        num_features = reference.classifier.in_features
        self.head = DualHead(num_features, num_classes=num_classes, drop_rate=drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        # After norm5 + ReLU: the map torchvision pools, and the one CheXNet's class activation maps use.
        return F.relu(self.features(x))

    def load_backbone_weights(self, state_dict: dict[str, Tensor], *, source: str) -> None:
        load_features_state_dict(self.features, state_dict, first_conv="conv0.weight", source=source)


def _create_densenet(*, pretrained: bool, weights: str | Path | None, **kwargs: object) -> DenseNet:
    model = DenseNet(**kwargs)  # type: ignore[arg-type]
    if weights is not None:
        model.load_backbone_weights(read_state_dict(weights), source=str(weights))
    elif pretrained:
        arch = {k: kwargs.get(k, v) for k, v in _DENSENET121.items()}
        arch["block_config"] = tuple(arch["block_config"])  # type: ignore[arg-type]
        if arch != _DENSENET121:
            raise BadInputError(
                f"ImageNet weights exist only for DenseNet-121, not {arch}",
                "pass --no-pretrained for this variant",
            )
        model.load_backbone_weights(densenet121_imagenet_state_dict(), source="torchvision IMAGENET1K_V1")
    return model


def densenet(*, pretrained: bool = False, weights: str | Path | None = None, **kwargs: object) -> DenseNet:
    """DenseNet-121 (torchvision, ImageNet weights when asked), 1024->512 neck, dropout 0.3."""
    return _create_densenet(pretrained=pretrained, weights=weights, **kwargs)


# Read by the registry without importing this module: literal values only.
MODEL_INFO = ModelInfo(
    name="densenet",
    builder="chexvision.models.densenet:densenet",
    summary="DenseNet-121 (torchvision, ImageNet weights when asked), 1024->512 neck, dropout 0.3.",
    description=(
        "A DenseNet (torchvision layout; DenseNet-121 at full size) with a one-channel stem, a feature layer to "
        "512 (ReLU, dropout {dropout}) and two heads on the shared 512-d feature"
    ),
    params=7_480_079,
    drop_rate=0.3,
    # torchvision's IMAGENET1K_V1 weights, as mirrored by timm on the Hub
    base_model="timm/densenet121.tv_in1k",
    pretrained=(
        "torchvision's ImageNet weights (`DenseNet121_Weights.IMAGENET1K_V1`; the one-channel stem sums the RGB "
        "`conv0` filters)"
    ),
    tiny={"growth_rate": 8, "block_config": (2, 2, 2, 2), "num_init_features": 16},
)
