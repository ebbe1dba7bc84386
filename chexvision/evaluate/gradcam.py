"""Grad-CAM (Selvaraju et al., ICCV 2017) on the last convolutional map, `model.forward_features(x)`.

The class score is the multi-label logit (before the sigmoid, as the paper recommends); channel weights are the
spatially averaged gradients of that score; the map is ReLU(sum_c w_c A_c), upsampled bilinearly to the input
size and scaled to [0, 1] per image. The map has the resolution of the last stage (stride 32: 2x2 at 64 px,
10x10 at 320 px), which bounds how precisely it can localise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chexvision.labels import LABELS

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

__all__ = [
    "cam_images",
    "grad_cam",
    "grad_cam_native",
    "overlay",
    "peak_location",
    "save_png",
    "top_classes",
    "upsample_cam",
]


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


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the gray image blended with the map in the `jet` colour map."""
    from matplotlib import colormaps

    if image.shape != cam.shape:
        raise ValueError(f"image {image.shape} and map {cam.shape} differ in size")
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    gray = np.repeat((image.astype(np.float64) / 255.0)[..., None], 3, axis=2)
    return (255 * np.clip((1 - alpha) * gray + alpha * heat, 0, 1)).astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray, *, scale: int = 1) -> Path:
    """Write an RGB uint8 image (nearest-upscaled `scale` times, so 64 px maps stay readable)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def _label_index(label: str) -> int:
    from chexvision.errors import BadInputError
    from chexvision.labels import canonical_label

    try:
        return LABELS.index(canonical_label(label))
    except ValueError:
        raise BadInputError(f"unknown label {label!r}", f"name one of the 14 NIH labels: {', '.join(LABELS)}") from None


def cam_images(
    run_dir: Path,
    images: Sequence[Path],
    out: Path,
    *,
    label: str | None = None,
    top: int = 3,
    device: str | torch.device = "auto",
) -> list[dict[str, object]]:
    """Grad-CAM overlays (PNG) of image files for the named label or each image's `top` classes.

    The label, the device (`chexvision.device.resolve_device`) and every image are checked before the model is
    loaded, so bad input fails fast.
    """
    import torch

    from chexvision.device import resolve_device
    from chexvision.errors import BadInputError
    from chexvision.inference.images import read_image
    from chexvision.inference.load import load_model_dir
    from chexvision.inference.tta import predict_views

    fixed = [_label_index(label)] if label else None
    if fixed is None and top < 1:
        raise BadInputError(f"--top {top} maps no class", "pass --top 1 or more, or --label NAME")
    dev = resolve_device(device)
    decoded = [read_image(Path(path)) for path in images]
    run = load_model_dir(run_dir, dev)
    transform = run.transform()  # image files: repeat training's preprocessing, CLAHE included
    written: list[dict[str, object]] = []
    for path, img in zip(images, decoded, strict=True):
        x = torch.from_numpy(transform(img)[None]).to(dev)
        with torch.inference_mode():
            probs = predict_views(run.model, x, tta=False)["plain"][0].cpu().numpy()
        classes = fixed or top_classes(probs, top)[0]
        cams = grad_cam(run.model, x.repeat(len(classes), 1, 1, 1), classes)
        base = transform.resized(img)
        for k, cam in zip(classes, cams, strict=True):
            name = LABELS[int(k)]
            target = out / f"{Path(path).stem}_{name}.png"
            save_png(target, overlay(base, cam), scale=max(1, 256 // transform.size))
            written.append({"image": str(path), "label": name, "probability": float(probs[k]), "png": str(target)})
    return written
