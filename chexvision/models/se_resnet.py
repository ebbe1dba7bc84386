"""SE-ResNet-34 for one-channel chest X-rays, trained from scratch.

Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018) on the basic-block ResNet of He et al., "Deep
Residual Learning for Image Recognition" (CVPR 2016); layout follows torchvision `models/resnet.py` and timm
`models/senet.py`.

Full size (depths 3-4-6-3, widths 64-128-256-512, SE reduction 16, in_chans 1) is 21,709,947 parameters:
21,439,596 in the backbone, 262,656 in the Linear(512, 512) neck and 7,695 in the two heads. The neck is kept
even though the last width is already 512: it gives the design's ~21.7 M and matches the DenseNet's
1024 -> 512 neck, so both models end in the same 512-d shared feature.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from chexvision.errors import BadInputError
from chexvision.labels import NUM_LABELS
from chexvision.models.heads import CheXModel, DualHead
from chexvision.models.registry import ModelInfo

__all__ = ["MODEL_INFO", "SEResNet", "seresnet"]

logger = logging.getLogger(__name__)


class _SEBlock(nn.Module):
    """Squeeze (global average pool) and excite (two 1x1 convs, sigmoid gate) a feature map's channels."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # At least 4 hidden units so tiny test widths still have a bottleneck; full size never hits the floor.
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * scale


class _BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm, SE on the residual branch before the addition (the SENet placement)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.se = _SEBlock(out_chans, reduction)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chans),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + self.downsample(x))


def _make_stage(in_chans: int, out_chans: int, depth: int, stride: int, reduction: int) -> nn.Sequential:
    blocks = [_BasicBlock(in_chans, out_chans, stride, reduction)]
    blocks += [_BasicBlock(out_chans, out_chans, 1, reduction) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class SEResNet(CheXModel):
    """SE-ResNet: 7x7/2 stem + max-pool, stages of SE basic blocks, then the shared 512-d neck and heads."""

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),  # blocks per stage
        widths: Sequence[int] = (64, 128, 256, 512),  # channels per stage; the stem has widths[0]
        in_chans: int = 1,  # grayscale X-rays
        reduction: int = 16,  # SE bottleneck ratio
        drop_rate: float = 0.5,  # dropout after the neck
        num_classes: int = NUM_LABELS,
    ) -> None:
        super().__init__()
        if len(depths) != len(widths) or not depths:
            raise BadInputError(
                f"seresnet depths {list(depths)} and widths {list(widths)} must be non-empty, equally long",
                "e.g. depths=(3,4,6,3) widths=(64,128,256,512)",
            )
        stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages: list[tuple[str, nn.Module]] = [("stem", stem)]
        in_width = widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            stages.append((f"layer{i + 1}", _make_stage(in_width, width, depth, 1 if i == 0 else 2, reduction)))
            in_width = width
        self.features = nn.Sequential(OrderedDict(stages))
        self.head = DualHead(in_width, num_classes=num_classes, drop_rate=drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


def _create_seresnet(*, pretrained: bool, weights: str | Path | None, **kwargs: object) -> SEResNet:
    if weights is not None:
        raise BadInputError(
            "seresnet is trained from scratch and takes no pretrained backbone weights",
            "drop --weights for seresnet (or use --model densenet)",
        )
    if pretrained:
        # Callers pass pretrained=True by default; there is nothing to load, so this is not an error.
        logger.info("seresnet has no pretrained weights; initialising from scratch")
    return SEResNet(**kwargs)  # type: ignore[arg-type]


def seresnet(*, pretrained: bool = False, weights: str | Path | None = None, **kwargs: object) -> SEResNet:
    """SE-ResNet-34 (basic blocks 3-4-6-3, SE r=16), from scratch, dropout 0.5."""
    return _create_seresnet(pretrained=pretrained, weights=weights, **kwargs)


# Read by the registry without importing this module: literal values only.
MODEL_INFO = ModelInfo(
    name="seresnet",
    builder="chexvision.models.se_resnet:seresnet",
    summary="SE-ResNet-34 (basic blocks 3-4-6-3, SE r=16), from scratch, dropout 0.5.",
    description=(
        "An SE-ResNet (basic residual blocks with squeeze-and-excitation, reduction 16; stem 7x7/2 + max-pool; "
        "SE-ResNet-34 at full size), trained from scratch, ending in a 512-d feature (ReLU, dropout {dropout}) "
        "and two heads"
    ),
    params=21_709_947,
    drop_rate=0.5,
    tiny={"depths": (1, 1, 1, 1), "widths": (8, 16, 32, 64)},
)
