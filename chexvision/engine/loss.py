"""The CheXVision loss: weighted multi-label BCE plus a binary "any finding" BCE (DESIGN §3).

loss = multi_weight * BCEWithLogits(multi, pos_weight = neg/pos per class, capped) + binary_weight * BCE(binary)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CheXLoss", "pos_weight_from_labels"]


def pos_weight_from_labels(labels: np.ndarray, cap: float) -> Tensor:
    """neg/pos per class from the training split's [N, C] labels, capped; a class without positives gets `cap`."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = labels.sum(axis=0)
    neg = labels.shape[0] - pos
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1.0), cap)
    return torch.tensor(np.clip(ratio, 1e-6, cap), dtype=torch.float32)


class CheXLoss(nn.Module):
    """Callable as `loss(multi_logits, binary_logits, y14, ybin) -> scalar`; computed in float32 under AMP."""

    pos_weight: Tensor

    def __init__(self, pos_weight: Tensor, *, multi_weight: float = 1.0, binary_weight: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight.float())
        self.multi_weight = multi_weight
        self.binary_weight = binary_weight

    def forward(self, multi_logits: Tensor, binary_logits: Tensor, y14: Tensor, ybin: Tensor) -> Tensor:
        multi = F.binary_cross_entropy_with_logits(multi_logits.float(), y14.float(), pos_weight=self.pos_weight)
        binary = F.binary_cross_entropy_with_logits(binary_logits.float(), ybin.float())
        return self.multi_weight * multi + self.binary_weight * binary
