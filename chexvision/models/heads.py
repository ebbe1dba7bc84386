"""The surface every CheXVision model shares: a 512-d neck, two heads, and backbone freezing.

A backbone subclass builds `self.features` (everything up to the last convolutional feature map) and
implements `forward_features`; `CheXModel` supplies `forward_head` and `forward`, so Grad-CAM, the trainer
and the exporter see one surface for every architecture. The neck mirrors the original design:
global average pool -> Linear(C, 512) -> ReLU -> Dropout ->
{Linear(512, 14) multi-label, Linear(512, 1) binary "any finding"}.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chexvision.labels import NUM_LABELS
from chexvision.models import registry

__all__ = ["FEATURE_DIM", "CheXModel", "DualHead", "count_parameters"]

FEATURE_DIM = 512  # width of the shared feature both heads read


class DualHead(nn.Module):
    """Pooled backbone features [B, C] -> (multi-label logits [B, num_classes], binary logits [B])."""

    def __init__(self, in_features: int, *, num_classes: int = NUM_LABELS, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.neck = nn.Sequential(
            nn.Linear(in_features, FEATURE_DIM),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self.multi = nn.Linear(FEATURE_DIM, num_classes)
        self.binary = nn.Linear(FEATURE_DIM, 1)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        feature = self.neck(pooled)
        return self.multi(feature), self.binary(feature).squeeze(-1)


class CheXModel(nn.Module):
    """Base class: subclasses set `self.features` and `self.head` and implement `forward_features`."""

    feature_dim: int = FEATURE_DIM
    features: nn.Module
    head: DualHead
    model_cfg: dict[str, Any] | None = None  # {"name", "kwargs"} that rebuild it; set by create_model

    def __init__(self) -> None:
        super().__init__()
        self._backbone_frozen = False

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, 1, H, W] -> last convolutional feature map [B, C, h, w] (the Grad-CAM target)."""
        raise NotImplementedError

    def forward_head(self, feat_map: Tensor) -> tuple[Tensor, Tensor]:
        """Feature map [B, C, h, w] -> (multi-label logits [B, 14], binary logits [B])."""
        pooled = F.adaptive_avg_pool2d(feat_map, 1).flatten(1)
        return self.head(pooled)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_head(self.forward_features(x))

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.features.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) training the backbone: no gradients, and BatchNorm running statistics held fixed.

        The BatchNorm layers stay in eval mode through later `model.train()` calls until unfrozen, because the
        trainer calls `train()` at the start of every epoch.
        """
        self._backbone_frozen = frozen
        for param in self.features.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if self._backbone_frozen:
            for module in self.features.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def count_parameters(name: str, **kwargs: Any) -> int:
    """Parameter count of `name` built with `kwargs`, on the meta device (no memory, no init cost; imports torch)."""
    with torch.device("meta"):
        model = registry.create_model(name, pretrained=False, weights=None, **kwargs)
    return sum(p.numel() for p in model.parameters())
