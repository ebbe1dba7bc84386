"""Batched training augmentation on the device (torch): the GPU path of the input pipeline.

Workers only decode and resize (uint8 [1,H,W], a quarter of the bytes of float32), so the CPU share per image
is small; the augmentation runs here on the whole batch: uint8 [B,1,H,W] on the device -> float32 normalised
[B,1,H,W]. Each sample draws its own parameters from the same distributions as the CPU path
(`chexvision.data.transforms.AugConfig`), and every op is vectorised over the batch:

- geometry: ONE `affine_grid` + `grid_sample` for flip, rotation, translation, scale and shear, built from the
  same forward matrix as the CPU path (inverted in closed form, mapped to normalised coordinates; nearest or
  bilinear as `AugConfig.interpolation` says, zero padding = the CPU path's black border);
- brightness/contrast: per-sample factors broadcast, with the same clamps as the CPU path, before the geometry
  (contrast about the mean of the image before the warp; the border gets the jittered black, as on the CPU path);
- Gaussian blur: one grouped separable convolution with a per-sample kernel (a delta when not blurred);
- random erasing: a per-sample rectangle mask, set to 0 after normalisation (the mean intensity).

Random numbers come from an explicit `torch.Generator` on the device, and nothing reads a value back to the
host, so the path never synchronises with the GPU. It runs unchanged on CPU tensors (the tests use that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chexvision.data.transforms import MEAN, STD, AugConfig, AugParams, blur_kernel_radius, uniform_draws

__all__ = [
    "GpuAugParams",
    "GpuAugment",
    "gpu_augment",
    "gpu_normalize",
    "identity_gpu_params",
    "params_from_cpu",
    "sample_gpu_params",
]


@dataclass
class GpuAugParams:
    """Per-sample augmentation parameters of a batch, as tensors on the device."""

    flip: torch.Tensor  # bool [B]
    angle: torch.Tensor  # degrees [B]
    translate: torch.Tensor  # pixels [B, 2] (x, y)
    scale: torch.Tensor  # [B]
    shear: torch.Tensor  # x-shear, degrees [B]
    brightness: torch.Tensor  # [B]
    contrast: torch.Tensor  # [B]
    blur_sigma: torch.Tensor  # pixels [B]; 0 = no blur
    erase: torch.Tensor  # int64 [B, 4]: top, left, height, width; height 0 = no erasing


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def sample_gpu_params(
    cfg: AugConfig,
    batch: int,
    height: int,
    width: int,
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> GpuAugParams:
    """Draw per-sample parameters for a batch on `device` (same distributions as `transforms.sample_params`)."""
    u = torch.rand(batch, 12, generator=generator, device=device, dtype=torch.float32)
    zeros = torch.zeros(batch, device=device)
    do_erase = u[:, 9] < cfg.erase_p
    area = _between(u[:, 10], *cfg.erase_scale) * (height * width)
    log_ratio = _between(u[:, 11], math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1]))
    eh = torch.sqrt(area * torch.exp(log_ratio)).round().clamp(1, height)
    ew = torch.sqrt(area / torch.exp(log_ratio)).round().clamp(1, width)
    pos = torch.rand(batch, 2, generator=generator, device=device)
    top = torch.floor(pos[:, 0] * (height - eh + 1)).clamp(max=height - 1)
    left = torch.floor(pos[:, 1] * (width - ew + 1)).clamp(max=width - 1)
    erase = torch.stack([top, left, eh * do_erase, ew * do_erase], dim=1).long()
    sigma_u = torch.rand(batch, generator=generator, device=device)
    blur = torch.where(u[:, 8] < cfg.blur_p, _between(sigma_u, *cfg.blur_sigma), zeros)
    draws = uniform_draws(cfg, u.T, height, width)
    translate = torch.stack(draws.pop("translate"), dim=1)
    return GpuAugParams(**draws, translate=translate, blur_sigma=blur, erase=erase)


def params_from_cpu(params: Sequence[AugParams], device: torch.device) -> GpuAugParams:
    """Batch CPU-path parameters (one `AugParams` per sample) for the GPU path: same draw, same result."""

    def col(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    erase = [p.erase if p.erase is not None else (0, 0, 0, 0) for p in params]
    return GpuAugParams(
        flip=torch.tensor([p.flip for p in params], dtype=torch.bool, device=device),
        angle=col([p.angle for p in params]),
        translate=torch.tensor([p.translate for p in params], dtype=torch.float32, device=device).reshape(-1, 2),
        scale=col([p.scale for p in params]),
        shear=col([p.shear for p in params]),
        brightness=col([p.brightness for p in params]),
        contrast=col([p.contrast for p in params]),
        blur_sigma=col([p.blur_sigma for p in params]),
        erase=torch.tensor(erase, dtype=torch.int64, device=device).reshape(len(params), 4),
    )


def identity_gpu_params(batch: int, device: torch.device) -> GpuAugParams:
    """Parameters that leave every image unchanged (apart from normalisation)."""
    return params_from_cpu([AugParams()] * batch, device)


def _inverse_theta(p: GpuAugParams, height: int, width: int) -> torch.Tensor:
    """[B, 2, 3] `affine_grid` matrices: output -> input in normalised coordinates (align_corners=False)."""
    a = torch.deg2rad(p.angle)
    cos, sin, sh = torch.cos(a) * p.scale, torch.sin(a) * p.scale, torch.tan(torch.deg2rad(p.shear))
    # Forward linear part L = R(angle) @ Shear @ scale @ Flip, applied about the image centre (see affine_matrix).
    fx = torch.where(p.flip, -1.0, 1.0)
    l00, l01 = cos * fx, cos * sh - sin
    l10, l11 = sin * fx, sin * sh + cos
    det = l00 * l11 - l01 * l10
    i00, i01, i10, i11 = l11 / det, -l01 / det, -l10 / det, l00 / det
    # In pixel coordinates: input = c + L^-1 (output - c - t), with c the centre (the flip is about it too).
    # Normalised q = (2 x + 1) / W - 1 maps the centre to 0 and scales x by 2 / W.
    tx = p.translate[:, 0] * (2.0 / width)
    ty = p.translate[:, 1] * (2.0 / height)
    ax, ay = width / 2.0, height / 2.0  # undo the per-axis normalisation for the linear part
    n00, n01 = i00, i01 * ay / ax
    n10, n11 = i10 * ax / ay, i11
    theta = torch.stack(
        [
            torch.stack([n00, n01, -(n00 * tx + n01 * ty)], dim=1),
            torch.stack([n10, n11, -(n10 * tx + n11 * ty)], dim=1),
        ],
        dim=1,
    )
    return theta


def _blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Per-sample separable Gaussian blur of [B,1,H,W] (reflect-101 border, like cv2's default)."""
    b, _, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp(min=1e-3)[:, None]
    k = torch.exp(-(offsets[None, :] ** 2) / (2.0 * s * s))
    k = k / k.sum(dim=1, keepdim=True)
    y = F.pad(x.reshape(1, b, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.reshape(b, 1, -1, 1), groups=b)
    y = F.conv2d(y, k.reshape(b, 1, 1, -1), groups=b)
    return y.reshape(b, 1, h, w)


def gpu_normalize(x: torch.Tensor, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """uint8 [B,1,H,W] -> float32 (x/255 - mean) / std (the eval transform on the GPU path)."""
    return (x.float() / 255.0 - mean) / std


def gpu_augment(
    x: torch.Tensor,
    params: GpuAugParams,
    *,
    max_blur_sigma: float,
    mean: float = MEAN,
    std: float = STD,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Augment a uint8 [B,1,H,W] batch with per-sample `params`; returns normalised float32 [B,1,H,W].

    `max_blur_sigma` fixes the blur kernel size for the batch (a Python number, so no host sync).
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a [B,1,H,W] batch, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    img = (x.float() / 255.0 * params.brightness.view(b, 1, 1, 1)).clamp_(0.0, 1.0)
    c = params.contrast.view(b, 1, 1, 1)
    shift = (1.0 - c) * img.mean(dim=(1, 2, 3), keepdim=True)  # contrast about the image's mean, before the warp
    img = (c * img + shift).clamp_(0.0, 1.0)
    black = shift.clamp(0.0, 1.0)  # what the jitter makes of black: the warp's border, as on the CPU path
    theta = _inverse_theta(params, h, w)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    img = F.grid_sample(img - black, grid, mode=interpolation, padding_mode="zeros", align_corners=False) + black
    if max_blur_sigma > 0:
        img = _blur(img, params.blur_sigma, blur_kernel_radius(max_blur_sigma))
    img = (img - mean) / std
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, eh, ew = (params.erase[:, i].view(b, 1, 1) for i in range(4))
    mask = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    return img.masked_fill(mask.unsqueeze(1), 0.0)


class GpuAugment:
    """Callable `(uint8 [B,1,H,W], generator) -> normalised float32 [B,1,H,W]` drawing fresh parameters."""

    def __init__(self, cfg: AugConfig, mean: float = MEAN, std: float = STD) -> None:
        self.cfg, self.mean, self.std = cfg, mean, std

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.cfg.enabled:
            return gpu_normalize(x, self.mean, self.std)
        b, _, h, w = x.shape
        params = sample_gpu_params(self.cfg, b, h, w, device=x.device, generator=generator)
        sigma = self.cfg.blur_sigma[1] if self.cfg.blur_p > 0 else 0.0
        return gpu_augment(x, params, max_blur_sigma=sigma, mean=self.mean, std=self.std,
                           interpolation=self.cfg.interpolation)  # fmt: skip
