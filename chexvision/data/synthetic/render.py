"""Renderer for the synthetic chest X-rays: composes anatomy, textures and the planted findings into one image.

An image is drawn in a canonical frame (normalised coordinates, x to the image's right = the patient's left) on a
working canvas of R = min(size, 160) pixels, then posed (shift, scale, small rotation) and resized to the output size
in one `cv2.warpAffine`; film grain and exposure (gain, offset, gamma LUT) are applied at the output size. Expensive
textures (lung vessels, ribs and clavicles, the fibrosis net, grain) are rendered once per process and size and
cropped at random offsets (`textures`), so one image costs a few dozen vectorised OpenCV/numpy operations.

The picture is composed from layers on the canvas:

* tissue: body outline with a vertical gradient, spine, background outside the body (`anatomy`);
* air: the two lungs minus the heart shadow, scaled by the lung depth (how much darker air is than tissue);
* opacity O in [0, 1]: how much of the air is filled (fluid, consolidation, masses); it also hides vessel texture;
* additive brightness: ribs, clavicles, pleural lines, calcified rims, reticular lines.

pixel = tissue - depth * air * (1 - O) + vessels * air * (1 - O) + additive

The findings and what each looks like are in `findings`. Random draws happen in a fixed order (anatomy,
findings in sorted label order, textures, tissue, pose, exposure), so a seed gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from chexvision.data.bbox import Box
from chexvision.data.synthetic.anatomy import draw_heart, draw_tissue, image_anatomy, lung_polygon
from chexvision.data.synthetic.findings import FINDINGS, Canvas
from chexvision.data.synthetic.textures import N_VARIANTS, SHIFT, Templates, fixed_pts, texture_templates

__all__ = ["Rendered", "render_image"]


@dataclass
class Rendered:
    image: np.ndarray  # uint8 HxW
    boxes: list[Box] = field(default_factory=list)


def render_image(labels: frozenset[str], size: int, rng: np.random.Generator, patient: dict[str, float]) -> Rendered:
    """Render one synthetic frontal chest X-ray with `labels` planted; boxes are in output pixels."""
    tpl = texture_templates(size)
    r = tpl.r
    anatomy = image_anatomy(patient, labels, rng)
    lungs = [lung_polygon(anatomy, left=True), lung_polygon(anatomy, left=False)]
    lung_u8 = np.zeros((r, r), np.uint8)
    cv2.fillPoly(lung_u8, [fixed_pts(p, r) for p in lungs], 255, cv2.LINE_8, SHIFT)
    heart_u8 = np.zeros((r, r), np.uint8)
    draw_heart(heart_u8, anatomy, r)

    cv = Canvas(tpl)
    ptx = np.zeros((r, r), np.float32)
    visible = cv2.bitwise_and(lung_u8, cv2.bitwise_not(heart_u8))  # lesions behind the heart would be invisible
    for name in sorted(labels):
        FINDINGS[name](cv, anatomy, lungs, visible, rng, ptx)

    sigma = max(0.5, r / 140)
    air = cv2.GaussianBlur(lung_u8, (0, 0), sigma).astype(np.float32)
    heart = cv2.GaussianBlur(heart_u8, (0, 0), sigma).astype(np.float32)
    air *= 1.0 / 255.0
    air *= 1.0 - heart * (1.0 / 255.0)

    opacity = cv.opacity
    if cv.soft is not None:
        opacity += cv2.resize(cv2.GaussianBlur(cv.soft, (0, 0), 1.0), (r, r), interpolation=cv2.INTER_LINEAR)
    if cv.haze is not None:
        opacity += cv2.resize(cv2.GaussianBlur(cv.haze, (0, 0), 1.3), (r, r), interpolation=cv2.INTER_LINEAR)
    np.clip(opacity, 0.0, 1.0, out=opacity)
    open_air = air * (1.0 - opacity)

    variant = int(patient["variant"])
    p = tpl.pad
    oy, ox = rng.integers(-p // 2, p // 2 + 1, size=2) + p
    vessels = tpl.vessels[(variant + int(rng.integers(2))) % N_VARIANTS, oy : oy + r, ox : ox + r]
    ry = int(rng.integers(-p // 2, p // 2 + 1)) + p
    ribs = tpl.ribs[variant, ry : ry + r, p : p + r]

    vessel_amp = anatomy.vessel_amp * (1.0 - ptx)
    img = draw_tissue(anatomy, r, tpl.ramp, rng)
    img -= anatomy.depth * open_air
    img += (vessels * vessel_amp) * open_air
    img += ribs * (rng.uniform(0.04, 0.07) * (0.45 + 0.55 * air))
    img += cv.extra
    return _pose_and_expose(img, cv.boxes, size, rng, tpl)


def _pose_and_expose(
    img: np.ndarray, boxes: list[tuple[str, np.ndarray]], size: int, rng: np.random.Generator, tpl: Templates
) -> Rendered:
    r = tpl.r
    scale = rng.uniform(0.9, 1.06)
    rot = math.radians(rng.uniform(-4.0, 4.0))
    cx, cy = 0.5 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.035, 0.035)
    rot_m = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    lin = rot_m * (size * scale)  # normalised canonical -> output pixels
    off = np.array([cx * size, cy * size]) - lin @ np.array([0.5, 0.5])
    m = np.concatenate([lin / r, off[:, None]], axis=1).astype(np.float64)
    out: np.ndarray = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    q = tpl.grain_pad
    gy, gx = rng.integers(0, 2 * q + 1, size=2)
    out = cv2.scaleAdd(tpl.grain[gy : gy + size, gx : gx + size], float(rng.uniform(0.012, 0.03)), out)
    gain, bias = rng.uniform(0.8, 1.25), rng.uniform(-0.1, 0.12)
    u8 = cv2.convertScaleAbs(out, alpha=255.0 * gain, beta=255.0 * bias)
    gamma = math.exp(rng.uniform(-0.3, 0.3))
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    u8 = cv2.LUT(u8, lut)

    result = Rendered(u8)
    for label, (x0, y0, x1, y1) in boxes:
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ lin.T + off
        lo = np.clip(corners.min(axis=0), 0, size - 1)
        hi = np.clip(corners.max(axis=0), 0, size - 1)
        if hi[0] - lo[0] < 1 or hi[1] - lo[1] < 1:
            continue
        result.boxes.append(
            Box(
                label,
                float(lo[0]),
                float(lo[1]),
                float(hi[0] - lo[0]),
                float(hi[1] - lo[1]),
            )
        )
    return result
