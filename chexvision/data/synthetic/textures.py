"""Drawing primitives and cached textures of the synthetic chest X-rays.

Coordinates are normalised (0..1 across the canvas) and drawn with OpenCV's fixed-point sub-pixel mode. The
expensive textures (lung vessels, ribs and clavicles, the fibrosis net, film grain) are rendered once per process
and output size from a fixed seed, because they are part of the renderer, not of the data; each image crops them at
a random offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["N_VARIANTS", "ONE", "SHIFT", "Templates", "fixed_pts", "texture_templates", "thickness_px", "working_size"]

_MAX_WORKING = 160  # canvas side in pixels for the canonical drawing; larger outputs are upsampled
SHIFT = 4  # sub-pixel bits for cv2 drawing calls
ONE = 1 << SHIFT
N_VARIANTS = 8  # pre-rendered texture variants per size


def working_size(size: int) -> int:
    """Side of the canonical drawing canvas for an output size."""
    return min(size, _MAX_WORKING)


# --------------------------------------------------------------------------------------------- textures (cached)


@dataclass(frozen=True)
class Templates:
    r: int
    pad: int
    vessels: np.ndarray  # (V, R+2p, R+2p) float32, 0..1
    ribs: np.ndarray  # (V, R+2p, R+2p) float32, 0..~1.5
    net: np.ndarray  # (R+2p, R+2p) float32 reticular lines 0..1
    periphery: np.ndarray  # (R, R) float32 weight of the lower, lateral lung zones (where fibrosis sits)
    ramp: np.ndarray  # (R, 1) float32 vertical gradient 0 (top) .. 1 (bottom)
    grain: np.ndarray  # (S+2q, S+2q) float32, unit std
    grain_pad: int


def fixed_pts(uv: np.ndarray, r: int, offset: float = 0.0) -> np.ndarray:
    """Normalised points -> int32 pixel points with SHIFT sub-pixel bits, for cv2 drawing."""
    return np.round((uv * r + offset) * ONE).astype(np.int32).reshape(-1, 1, 2)


def thickness_px(t: float, r: int) -> int:
    return max(1, round(t * r))


@lru_cache(maxsize=8)
def texture_templates(size: int) -> Templates:
    r = working_size(size)
    pad = max(4, r // 10)
    rng = np.random.default_rng(20170_0000 + size)  # fixed: textures are part of the renderer, not the data seed
    side = r + 2 * pad
    vessels = np.stack([_vessel_texture(rng, r, pad) for _ in range(N_VARIANTS)])
    ribs = np.stack([_rib_texture(rng, r, pad) for _ in range(N_VARIANTS)])
    net = _net_texture(rng, side, r)
    ramp = np.linspace(0.0, 1.0, r, dtype=np.float32).reshape(r, 1)
    ys = np.linspace(0.0, 1.0, r, dtype=np.float32)
    periphery = np.clip((ys[:, None] - 0.3) * 2.2, 0, 1) * np.clip(np.abs(ys[None, :] - 0.5) * 4.0 - 0.2, 0, 1)
    q = max(4, size // 8)
    noise = rng.standard_normal((size + 2 * q, size + 2 * q)).astype(np.float32)
    grain: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 0.7)
    grain /= float(grain.std()) + 1e-6
    return Templates(r, pad, vessels, ribs, net, periphery.astype(np.float32), ramp, grain, q)


def _vessel_texture(rng: np.random.Generator, r: int, pad: int) -> np.ndarray:
    """Branching vessels radiating from both hila, brighter and thicker centrally, plus faint parenchymal mottling."""
    side = r + 2 * pad
    img = np.zeros((side, side), np.float32)
    for hx, hy, sgn in ((0.40, 0.44, -1.0), (0.60, 0.46, 1.0)):
        for _ in range(34):
            ang = rng.uniform(-1.45, 1.45) + (math.pi if sgn < 0 else 0.0)
            _draw_vessel(img, rng, r, pad, hx, hy, ang, length=rng.uniform(0.18, 0.38), width=0.011, level=1.0)
    mottle = rng.standard_normal((side, side)).astype(np.float32)
    mottle = cv2.GaussianBlur(mottle, (0, 0), max(0.8, r / 90)) * 0.18
    img = cv2.GaussianBlur(img, (0, 0), max(0.5, r / 200)) + mottle
    return np.clip(img, 0.0, 1.2)


def _draw_vessel(
    img: np.ndarray,
    rng: np.random.Generator,
    r: int,
    pad: int,
    x: float,
    y: float,
    ang: float,
    length: float,
    width: float,
    level: float,
    depth: int = 0,
) -> None:
    steps = 6
    seg = length / steps
    for k in range(steps):
        ang += rng.normal(0, 0.18)
        nx, ny = x + seg * math.cos(ang), y + seg * math.sin(ang)
        frac = 1.0 - k / steps
        thick = thickness_px(width * (0.35 + 0.65 * frac), r)
        p0 = fixed_pts(np.array([x, y]), r, pad).reshape(2)
        p1 = fixed_pts(np.array([nx, ny]), r, pad).reshape(2)
        cv2.line(
            img,
            (int(p0[0]), int(p0[1])),
            (int(p1[0]), int(p1[1])),
            level * (0.35 + 0.65 * frac),
            thick,
            cv2.LINE_8,
            SHIFT,
        )
        if depth < 2 and rng.random() < 0.3:
            _draw_vessel(
                img,
                rng,
                r,
                pad,
                nx,
                ny,
                ang + rng.choice([-0.6, 0.6]),
                length * 0.45,
                width * 0.6,
                level * 0.7 * frac,
                depth + 1,
            )
        x, y = nx, ny


def _rib_texture(rng: np.random.Generator, r: int, pad: int) -> np.ndarray:
    """Posterior ribs (both sides) and clavicles; value ~1 on bone."""
    side = r + 2 * pad
    img = np.zeros((side, side), np.float32)
    spacing = rng.uniform(0.05, 0.06)
    drop = rng.uniform(0.09, 0.14)
    d = np.linspace(0.03, 0.42, 24)
    thick = thickness_px(rng.uniform(0.018, 0.024), r)
    y0 = rng.uniform(0.10, 0.13)
    for k in range(11):
        yk = y0 + k * spacing
        curve = yk - 0.018 * np.sin(np.pi * d / 0.42) + drop * (d / 0.42) ** 2.5
        for sgn in (-1.0, 1.0):
            pts = np.stack([0.5 + sgn * d, curve], axis=1)
            cv2.polylines(img, [fixed_pts(pts, r, pad)], False, 1.0, thick, cv2.LINE_8, SHIFT)
    cl = np.linspace(0.0, 1.0, 12)
    for sgn in (-1.0, 1.0):
        xs = 0.5 + sgn * (0.04 + 0.30 * cl)
        ys = 0.17 - 0.07 * cl + 0.025 * np.sin(np.pi * cl) + rng.uniform(-0.01, 0.01)
        cv2.polylines(
            img, [fixed_pts(np.stack([xs, ys], 1), r, pad)], False, 1.5, thickness_px(0.028, r), cv2.LINE_8, SHIFT
        )
    return cv2.GaussianBlur(img, (0, 0), max(0.5, r / 160))


def _net_texture(rng: np.random.Generator, side: int, r: int) -> np.ndarray:
    """Reticular (honeycomb-like) net of short bright lines for Fibrosis."""
    img = np.zeros((side, side), np.float32)
    cell = max(3.0, 0.045 * r)
    n = int((side / cell) ** 2 * 1.6)
    centres = rng.uniform(0, side, (n, 2))
    angles = rng.uniform(0, np.pi, n)
    half = cell * rng.uniform(0.45, 0.8, n)
    p0 = centres - half[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    p1 = centres + half[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    for a, b in zip(np.round(p0 * ONE).astype(np.int32), np.round(p1 * ONE).astype(np.int32), strict=True):
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, 1, cv2.LINE_8, SHIFT)
    return cv2.GaussianBlur(img, (0, 0), 0.5)
