"""Grad-CAM (Selvaraju et al., ICCV 2017) on the last convolutional map, `model.forward_features(x)`: the computation.

The class score is the multi-label logit (before the sigmoid, as the paper recommends); channel weights are the
spatially averaged gradients of that score; the map is ReLU(sum_c w_c A_c), upsampled bilinearly to the input
size and scaled to [0, 1] per image. The map has the resolution of the last stage (stride 32: 2x2 at 64 px,
10x10 at 320 px), which bounds how precisely it can localise.

Here because the demo and `chexvision cam` both need it and the demo sits on `inference` only; drawing (overlays,
PNGs, the report's figures) stays in `chexvision.evaluate.gradcam`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from chexvision.labels import LABELS

if TYPE_CHECKING:
    from torch import Tensor, nn

    from chexvision.inference.load import LoadedModel

__all__ = ["cam_maps", "grad_cam", "grad_cam_native", "peak_location", "top_classes", "upsample_cam"]


def grad_cam_native(model: nn.Module, x: Tensor, classes: Sequence[int] | int) -> np.ndarray:
    """Maps [B, h, w] at the resolution of `forward_features` (not normalised); `classes`: one index or one
    per image."""
    import torch
    import torch.nn.functional as F

    model.eval()
    cls = [int(classes)] * x.shape[0] if isinstance(classes, int) else [int(c) for c in classes]
    if len(cls) != x.shape[0]:
        raise ValueError(f"{len(cls)} classes for {x.shape[0]} images")
    with torch.enable_grad():
        feat = model.forward_features(x)  # type: ignore[operator]
        feat = feat.detach().requires_grad_(True)  # leaf: gradients stop at the map, not the backbone
        multi, _ = model.forward_head(feat)  # type: ignore[operator]
        score = multi.float().gather(1, torch.tensor(cls, device=multi.device).view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, feat)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * feat.detach().float()).sum(dim=1)).cpu().numpy()


def upsample_cam(native: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of [B, h, w] maps to `size` (H, W), each scaled to [0, 1] by its maximum."""
    import torch
    import torch.nn.functional as F

    cam = F.interpolate(torch.from_numpy(native)[:, None].float(), size=size, mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).numpy()


def peak_location(native: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """(y, x) in input pixels of the centre of the native map's strongest cell.

    The pointing game reads the peak here rather than on the upsampled map: bilinear upsampling clamps at the
    border, so a coarse map (2x2 at 64 px) has its maximum on a whole corner plateau, and `argmax` would pick
    the plateau's first pixel, the image corner.
    """
    h, w = native.shape
    row, col = np.unravel_index(int(np.argmax(native)), native.shape)
    return int((row + 0.5) * size[0] / h), int((col + 0.5) * size[1] / w)


def grad_cam(model: nn.Module, x: Tensor, classes: Sequence[int] | int) -> np.ndarray:
    """Maps [B, H, W] in [0, 1] for input x [B, 1, H, W]; `classes` is one label index or one per image."""
    return upsample_cam(grad_cam_native(model, x, classes), (int(x.shape[-2]), int(x.shape[-1])))


def top_classes(probs: np.ndarray, k: int = 3) -> list[list[int]]:
    """Indices of the `k` most probable labels per row of [N, 14] probabilities."""
    return [list(np.argsort(-row, kind="stable")[:k]) for row in np.atleast_2d(probs)[:, : len(LABELS)]]


def cam_maps(
    loaded: LoadedModel, image: np.ndarray, classes: Sequence[int], size: tuple[int, int] | None = None
) -> np.ndarray:
    """Grad-CAM maps [len(classes), H, W] in [0, 1] of one uint8 gray image under `loaded`'s own preprocessing,
    upsampled to `size` (default: the model's input size), so maps of models with different sizes can be averaged."""
    import torch

    transform = loaded.transform()  # image files: training's preprocessing, CLAHE included
    device = next(loaded.model.parameters()).device
    x = torch.from_numpy(transform(image)[None]).to(device)
    native = grad_cam_native(loaded.model, x.repeat(len(classes), 1, 1, 1), list(classes))
    return upsample_cam(native, size or (transform.size, transform.size))
