"""Test-time augmentation: identity, horizontal flip and +-7 degree rotations, averaged in probability space.

The views are the ones the original project claimed a gain from; we report them beside the plain prediction
instead of replacing it. Rotations fill the uncovered corners with black (the normalised value of 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["TTA_VIEWS", "predict_views", "tta_views"]

TTA_VIEWS: tuple[str, ...] = ("identity", "hflip", "rot+7", "rot-7")
ROTATION_DEGREES = 7.0


def tta_views(x: Tensor, *, black: float = 0.0) -> dict[str, Tensor]:
    """The four views of a normalised batch [B, 1, H, W]; `black` is the normalised value of a 0 pixel."""
    from torchvision.transforms.v2 import functional as tvf

    def rotate(angle: float) -> Tensor:
        return tvf.rotate(x, angle, interpolation=tvf.InterpolationMode.BILINEAR, fill=[black])

    views: dict[str, Callable[[], Tensor]] = {
        "identity": lambda: x,
        "hflip": lambda: x.flip(-1),
        "rot+7": lambda: rotate(ROTATION_DEGREES),
        "rot-7": lambda: rotate(-ROTATION_DEGREES),
    }
    return {name: make() for name, make in views.items()}


def predict_views(model: nn.Module, x: Tensor, *, tta: bool, black: float = 0.0) -> dict[str, Tensor]:
    """Probabilities [B, 15] (14 labels + binary) for the plain input, and with `tta` their 4-view mean.

    Returns `{"plain": probs}` or `{"plain": probs, "tta": probs}`.
    """
    import torch

    def probs(view: Tensor) -> Tensor:
        multi, binary = model(view)
        return torch.sigmoid(torch.cat([multi.float(), binary.float().reshape(-1, 1)], dim=1))

    plain = probs(x)
    if not tta:
        return {"plain": plain}
    others = [probs(v) for name, v in tta_views(x, black=black).items() if name != "identity"]
    return {"plain": plain, "tta": torch.stack([plain, *others]).mean(0)}
