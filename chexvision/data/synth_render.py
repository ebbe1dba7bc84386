"""Renderer for the synthetic chest X-rays: anatomy, the 14 planted findings and their boxes.

An image is drawn in a canonical frame (normalised coordinates, x to the image's right = the patient's left) on a
working canvas of R = min(size, 160) pixels, then posed (shift, scale, small rotation) and resized to the output size
in one `cv2.warpAffine`; film grain and exposure (gain, offset, gamma LUT) are applied at the output size. Expensive
textures (lung vessels, ribs and clavicles, the fibrosis net, grain) are rendered once per process and size and
cropped at random offsets, so one image costs a few dozen vectorised OpenCV/numpy operations.

The picture is composed from layers on the canvas:

* tissue: body outline with a vertical gradient, spine, background outside the body;
* air: the two lungs minus the heart shadow, scaled by the lung depth (how much darker air is than tissue);
* opacity O in [0, 1]: how much of the air is filled (fluid, consolidation, masses); it also hides vessel texture;
* additive brightness: ribs, clavicles, pleural lines, calcified rims, reticular lines.

pixel = tissue - depth * air * (1 - O) + vessels * air * (1 - O) + additive

Findings (size and contrast chosen so each is visible at 64 px, position/size/intensity random so no global pixel
statistic gives a label away; focal lesions are placed in lung not hidden by the heart shadow):

* Atelectasis: one hemidiaphragm raised (volume loss) and a dense plate-like band in the lower/mid zone.
* Cardiomegaly: heart 1.35-1.6x wider (cardiothoracic ratio > 0.5).
* Effusion: fluid filling the lung base with a meniscus rising laterally (blunted costophrenic angle); 1 or 2 sides.
* Infiltration: many small soft blotches scattered over both lungs (diffuse).
* Mass: one large round dense lesion, brighter than soft tissue.
* Nodule: 1-3 small round dense lesions.
* Pneumonia: one large fuzzy cloud with mottling in the mid/lower zone of one lung (lobar, soft-edged).
* Pneumothorax: a lateral/apical rim of lung without vessel texture, darker, bounded by a thin visible pleural line.
* Consolidation: dense, homogeneous, sharp-edged wedge with a straight (fissure) upper border, one lung.
* Edema: bilateral perihilar "bat wing" haze with Kerley B lines at the lateral bases.
* Emphysema: larger, hyperlucent lungs with flat, low diaphragms, sparse vessels and a narrow heart.
* Fibrosis: reticular net in the lower/peripheral zones of both lungs, with slight volume loss.
* Pleural_Thickening: a dense rim along the lateral chest wall or an apical cap.
* Hernia: a round air bubble with a bright wall and an air-fluid level behind the heart, above the diaphragm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from chexvision.data.bbox import Box

__all__ = ["Rendered", "render_image", "working_size"]

_MAX_WORKING = 160  # canvas side in pixels for the canonical drawing; larger outputs are upsampled
_SHIFT = 4  # sub-pixel bits for cv2 drawing calls
_ONE = 1 << _SHIFT
_N_VARIANTS = 8  # pre-rendered texture variants per size


@dataclass
class Rendered:
    image: np.ndarray  # uint8 HxW
    boxes: list[Box] = field(default_factory=list)


def working_size(size: int) -> int:
    """Side of the canonical drawing canvas for an output size."""
    return min(size, _MAX_WORKING)


# --------------------------------------------------------------------------------------------- textures (cached)


@dataclass(frozen=True)
class _Templates:
    r: int
    pad: int
    vessels: np.ndarray  # (V, R+2p, R+2p) float32, 0..1
    ribs: np.ndarray  # (V, R+2p, R+2p) float32, 0..~1.5
    net: np.ndarray  # (R+2p, R+2p) float32 reticular lines 0..1
    periphery: np.ndarray  # (R, R) float32 weight of the lower, lateral lung zones (where fibrosis sits)
    ramp: np.ndarray  # (R, 1) float32 vertical gradient 0 (top) .. 1 (bottom)
    grain: np.ndarray  # (S+2q, S+2q) float32, unit std
    grain_pad: int


def _pts(uv: np.ndarray, r: int, offset: float = 0.0) -> np.ndarray:
    """Normalised points -> int32 pixel points with _SHIFT sub-pixel bits, for cv2 drawing."""
    return np.round((uv * r + offset) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _thick(t: float, r: int) -> int:
    return max(1, round(t * r))


@lru_cache(maxsize=8)
def _templates(size: int) -> _Templates:
    r = working_size(size)
    pad = max(4, r // 10)
    rng = np.random.default_rng(20170_0000 + size)  # fixed: textures are part of the renderer, not the data seed
    side = r + 2 * pad
    vessels = np.stack([_vessel_texture(rng, r, pad) for _ in range(_N_VARIANTS)])
    ribs = np.stack([_rib_texture(rng, r, pad) for _ in range(_N_VARIANTS)])
    net = _net_texture(rng, side, r)
    ramp = np.linspace(0.0, 1.0, r, dtype=np.float32).reshape(r, 1)
    ys = np.linspace(0.0, 1.0, r, dtype=np.float32)
    periphery = np.clip((ys[:, None] - 0.3) * 2.2, 0, 1) * np.clip(np.abs(ys[None, :] - 0.5) * 4.0 - 0.2, 0, 1)
    q = max(4, size // 8)
    noise = rng.standard_normal((size + 2 * q, size + 2 * q)).astype(np.float32)
    grain: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 0.7)
    grain /= float(grain.std()) + 1e-6
    return _Templates(r, pad, vessels, ribs, net, periphery.astype(np.float32), ramp, grain, q)


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
        thick = _thick(width * (0.35 + 0.65 * frac), r)
        p0 = _pts(np.array([x, y]), r, pad).reshape(2)
        p1 = _pts(np.array([nx, ny]), r, pad).reshape(2)
        cv2.line(
            img,
            (int(p0[0]), int(p0[1])),
            (int(p1[0]), int(p1[1])),
            level * (0.35 + 0.65 * frac),
            thick,
            cv2.LINE_8,
            _SHIFT,
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
    thick = _thick(rng.uniform(0.018, 0.024), r)
    y0 = rng.uniform(0.10, 0.13)
    for k in range(11):
        yk = y0 + k * spacing
        curve = yk - 0.018 * np.sin(np.pi * d / 0.42) + drop * (d / 0.42) ** 2.5
        for sgn in (-1.0, 1.0):
            pts = np.stack([0.5 + sgn * d, curve], axis=1)
            cv2.polylines(img, [_pts(pts, r, pad)], False, 1.0, thick, cv2.LINE_8, _SHIFT)
    cl = np.linspace(0.0, 1.0, 12)
    for sgn in (-1.0, 1.0):
        xs = 0.5 + sgn * (0.04 + 0.30 * cl)
        ys = 0.17 - 0.07 * cl + 0.025 * np.sin(np.pi * cl) + rng.uniform(-0.01, 0.01)
        cv2.polylines(img, [_pts(np.stack([xs, ys], 1), r, pad)], False, 1.5, _thick(0.028, r), cv2.LINE_8, _SHIFT)
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
    for a, b in zip(np.round(p0 * _ONE).astype(np.int32), np.round(p1 * _ONE).astype(np.int32), strict=True):
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, 1, cv2.LINE_8, _SHIFT)
    return cv2.GaussianBlur(img, (0, 0), 0.5)


# --------------------------------------------------------------------------------------------- geometry


@dataclass
class _Anatomy:
    """Canonical-frame geometry of one image (normalised units)."""

    lateral: float  # lateral lung wall distance from the image edge
    apex_y: float
    base_y: tuple[float, float]  # costophrenic angle height, (image left lung, image right lung)
    dome: tuple[float, float]  # how far each hemidiaphragm dome rises above its angle
    medial: float  # medial lung border distance from the midline
    heart_w: float  # heart half-width
    heart_h: float
    heart_cx: float
    heart_cy: float
    body: float  # body side margin
    depth: float  # lung darkness
    vessel_amp: float
    collapsed_side: int = 0  # the lung whose diaphragm Atelectasis raised


def patient_anatomy(rng: np.random.Generator) -> dict[str, float]:
    """Per-patient anatomy parameters (follow-up images of a patient share them)."""
    return {
        "lateral": rng.uniform(0.085, 0.125),
        "apex_y": rng.uniform(0.11, 0.17),
        "base_y": rng.uniform(0.72, 0.78),
        "dome": rng.uniform(0.045, 0.075),
        "medial": rng.uniform(0.045, 0.065),
        "heart_w": rng.uniform(0.115, 0.145),
        "heart_h": rng.uniform(0.095, 0.12),
        "heart_cx": rng.uniform(0.525, 0.55),
        "heart_cy": rng.uniform(0.59, 0.63),
        "body": rng.uniform(-0.03, 0.04),
        "variant": float(rng.integers(_N_VARIANTS)),
    }


def _lung_polygon(a: _Anatomy, left: bool) -> np.ndarray:
    """Smoothed lung outline for the image-left (patient right) or image-right lung, in normalised coordinates."""
    i = 0 if left else 1
    lx, ay, by, dome, m = a.lateral, a.apex_y, a.base_y[i], a.dome[i], 0.5 - a.medial
    ax = 0.30
    pts = np.array(
        [
            (ax, ay),
            (ax - 0.075, ay + 0.03),
            (lx + 0.025, ay + 0.15),
            (lx, ay + 0.33),
            (lx + 0.004, by - 0.06),
            (lx + 0.012, by),
            (lx + 0.05, by - dome * 0.55),
            (0.27, by - dome),
            (m - 0.04, by - dome * 0.75),
            (m, by - dome * 0.35),
            (m + 0.005, 0.46),
            (m - 0.015, 0.30),
            (ax + 0.07, ay + 0.04),
        ]
    )
    pts = _chaikin(pts, 2)
    if not left:
        pts[:, 0] = 1.0 - pts[:, 0]
    return pts


def _chaikin(pts: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return pts


# --------------------------------------------------------------------------------------------- the image


class _Canvas:
    """Working layers of one image at R x R."""

    def __init__(self, tpl: _Templates) -> None:
        self.tpl = tpl
        self.r = r = tpl.r
        self.opacity = np.zeros((r, r), np.float32)  # sharp-edged fill of the air spaces
        self.soft: np.ndarray | None = None  # R/2 canvas, blurred: blotches, effusion, consolidation
        self.haze: np.ndarray | None = None  # R/4 canvas, blurred more: pneumonia, edema
        self.extra = np.zeros((r, r), np.float32)  # additive brightness
        self.boxes: list[tuple[str, np.ndarray]] = []  # label, (x0, y0, x1, y1) normalised canonical

    def soft_layer(self) -> np.ndarray:
        if self.soft is None:
            self.soft = np.zeros((min(self.r, max(64, self.r // 2)),) * 2, np.float32)
        return self.soft

    def haze_layer(self) -> np.ndarray:
        if self.haze is None:
            self.haze = np.zeros((min(self.r, max(32, self.r // 4)),) * 2, np.float32)
        return self.haze

    def box(self, label: str, x0: float, y0: float, x1: float, y1: float) -> None:
        self.boxes.append((label, np.array([x0, y0, x1, y1], dtype=np.float64)))

    def box_points(self, label: str, pts: np.ndarray, margin: float = 0.0) -> None:
        lo, hi = pts.min(axis=0) - margin, pts.max(axis=0) + margin
        self.box(label, lo[0], lo[1], hi[0], hi[1])


def render_image(labels: frozenset[str], size: int, rng: np.random.Generator, patient: dict[str, float]) -> Rendered:
    """Render one synthetic frontal chest X-ray with `labels` planted; boxes are in output pixels."""
    tpl = _templates(size)
    r = tpl.r
    anatomy = _image_anatomy(patient, labels, rng)
    lungs = [_lung_polygon(anatomy, left=True), _lung_polygon(anatomy, left=False)]
    lung_u8 = np.zeros((r, r), np.uint8)
    cv2.fillPoly(lung_u8, [_pts(p, r) for p in lungs], 255, cv2.LINE_8, _SHIFT)
    heart_u8 = np.zeros((r, r), np.uint8)
    _draw_heart(heart_u8, anatomy, r)

    cv = _Canvas(tpl)
    ptx = np.zeros((r, r), np.float32)
    visible = cv2.bitwise_and(lung_u8, cv2.bitwise_not(heart_u8))  # lesions behind the heart would be invisible
    for name in sorted(labels):
        _FINDINGS[name](cv, anatomy, lungs, visible, rng, ptx)

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
    vessels = tpl.vessels[(variant + int(rng.integers(2))) % _N_VARIANTS, oy : oy + r, ox : ox + r]
    ry = int(rng.integers(-p // 2, p // 2 + 1)) + p
    ribs = tpl.ribs[variant, ry : ry + r, p : p + r]

    vessel_amp = anatomy.vessel_amp * (1.0 - ptx)
    img = _tissue(anatomy, r, tpl.ramp, rng)
    img -= anatomy.depth * open_air
    img += (vessels * vessel_amp) * open_air
    img += ribs * (rng.uniform(0.04, 0.07) * (0.45 + 0.55 * air))
    img += cv.extra
    return _pose_and_expose(img, cv.boxes, size, rng, tpl)


def _image_anatomy(patient: dict[str, float], labels: frozenset[str], rng: np.random.Generator) -> _Anatomy:
    breath = rng.uniform(-0.02, 0.02)
    base = patient["base_y"] + breath
    base_y = [base, base + rng.uniform(0.0, 0.025)]  # the left hemidiaphragm usually sits lower
    dome = [patient["dome"], patient["dome"] + rng.uniform(-0.01, 0.01)]
    a = _Anatomy(
        lateral=patient["lateral"] + rng.uniform(-0.006, 0.006),
        apex_y=patient["apex_y"] + rng.uniform(-0.01, 0.01),
        base_y=(base_y[0], base_y[1]),
        dome=(dome[0], dome[1]),
        medial=patient["medial"],
        heart_w=patient["heart_w"] * rng.uniform(0.96, 1.04),
        heart_h=patient["heart_h"] * rng.uniform(0.96, 1.04),
        heart_cx=patient["heart_cx"],
        heart_cy=patient["heart_cy"] + breath * 0.5,
        body=patient["body"],
        depth=rng.uniform(0.30, 0.40),
        vessel_amp=rng.uniform(0.2, 0.3),
    )
    if "Emphysema" in labels:
        grow = rng.uniform(0.04, 0.07)
        a.base_y = (a.base_y[0] + grow, a.base_y[1] + grow)
        a.dome = (rng.uniform(0.0, 0.015), rng.uniform(0.0, 0.015))
        a.apex_y -= 0.015
        a.lateral -= 0.012
        a.depth *= 1.1
        a.vessel_amp *= 0.35
        a.heart_w *= 0.82
    if "Fibrosis" in labels:
        shrink = rng.uniform(0.03, 0.05)
        a.base_y = (a.base_y[0] - shrink, a.base_y[1] - shrink)
    if "Atelectasis" in labels:
        side = a.collapsed_side = int(rng.integers(2))
        ys = list(a.base_y)
        ds = list(a.dome)
        ys[side] -= rng.uniform(0.04, 0.08)
        ds[side] += rng.uniform(0.01, 0.03)
        a.base_y, a.dome = (ys[0], ys[1]), (ds[0], ds[1])
    if "Cardiomegaly" in labels:
        a.heart_w = patient["heart_w"] * rng.uniform(1.45, 1.7)
        a.heart_h *= rng.uniform(1.1, 1.2)
        a.heart_cx += rng.uniform(0.01, 0.03)
    return a


def _draw_heart(canvas: np.ndarray, a: _Anatomy, r: int) -> None:
    centre = (round(a.heart_cx * r * _ONE), round(a.heart_cy * r * _ONE))
    axes = (round(a.heart_w * r * _ONE), round(a.heart_h * r * _ONE))
    cv2.ellipse(canvas, centre, axes, -12.0, 0, 360, 255, -1, cv2.LINE_8, _SHIFT)
    # mediastinum above the heart: the great vessels
    top = np.array(
        [
            [0.5 - a.medial - 0.005, 0.22],
            [0.5 + a.medial + 0.01, 0.22],
            [0.5 + a.medial + 0.02, a.heart_cy],
            [0.5 - a.medial - 0.01, a.heart_cy],
        ]
    )
    cv2.fillPoly(canvas, [_pts(top, r)], 255, cv2.LINE_8, _SHIFT)


def _tissue(a: _Anatomy, r: int, ramp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Body outline with soft-tissue gradient, spine and neck; background outside."""
    bg = rng.uniform(0.04, 0.10)
    img = np.full((r, r), bg, np.float32)
    b = a.body
    outline = np.array(
        [
            [0.40, -0.05],
            [0.41, 0.05],
            [0.18, 0.08],
            [b, 0.14],
            [b - 0.02, 0.5],
            [b + 0.03, 1.05],
            [0.97 - b, 1.05],
            [1.02 - b, 0.5],
            [1.0 - b, 0.14],
            [0.82, 0.08],
            [0.59, 0.05],
            [0.60, -0.05],
        ]
    )
    level = rng.uniform(0.55, 0.65)
    cv2.fillPoly(img, [_pts(outline, r)], float(level), cv2.LINE_8, _SHIFT)
    cv2.rectangle(
        img,
        (round(0.475 * r * _ONE), 0),
        (round(0.525 * r * _ONE), r * _ONE),
        float(level + 0.06),
        -1,
        cv2.LINE_8,
        _SHIFT,
    )
    tissue: np.ndarray = cv2.GaussianBlur(img, (0, 0), max(0.7, r / 100))
    tissue += ramp * (rng.uniform(0.03, 0.12) * (tissue > bg + 0.05))
    return tissue


def _pose_and_expose(
    img: np.ndarray, boxes: list[tuple[str, np.ndarray]], size: int, rng: np.random.Generator, tpl: _Templates
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


# --------------------------------------------------------------------------------------------- findings


def _sample_in_lung(
    lung_u8: np.ndarray,
    rng: np.random.Generator,
    side: int | None,
    y_range: tuple[float, float] = (0.0, 1.0),
    tries: int = 40,
) -> tuple[float, float]:
    """A random point inside the lungs (one side if given) within a vertical band of the lung field."""
    r = lung_u8.shape[0]
    x_range = (0.0, 0.5) if side == 0 else (0.5, 1.0) if side == 1 else (0.0, 1.0)
    for _ in range(tries):
        x, y = rng.uniform(*x_range), rng.uniform(*y_range)
        if lung_u8[min(r - 1, int(y * r)), min(r - 1, int(x * r))]:
            return float(x), float(y)
    return (0.3 if side != 1 else 0.7), 0.45


def _lung_band(lungs: list[np.ndarray], side: int, lo: float, hi: float) -> tuple[float, float]:
    """Absolute y range covering the fraction [lo, hi] of a lung's height."""
    ys = lungs[side][:, 1]
    top, bottom = float(ys.min()), float(ys.max())
    return top + lo * (bottom - top), top + hi * (bottom - top)


def _atelectasis(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = a.collapsed_side
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.5, 0.85))
    half = rng.uniform(0.06, 0.11)
    ang = rng.uniform(-0.35, 0.35)
    p = np.array(
        [[x - half * math.cos(ang), y - half * math.sin(ang)], [x + half * math.cos(ang), y + half * math.sin(ang)]]
    )
    t = rng.uniform(0.018, 0.03)
    cv2.polylines(cv.opacity, [_pts(p, cv.r)], False, 1.0, _thick(t, cv.r), cv2.LINE_8, _SHIFT)
    cv2.polylines(cv.extra, [_pts(p, cv.r)], False, 0.06, _thick(t, cv.r), cv2.LINE_8, _SHIFT)
    cv.box_points("Atelectasis", p, margin=t + 0.01)


def _cardiomegaly(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    cv.box(
        "Cardiomegaly",
        a.heart_cx - a.heart_w * 1.02,
        a.heart_cy - a.heart_h * 1.05,
        a.heart_cx + a.heart_w * 1.02,
        a.heart_cy + a.heart_h * 1.05,
    )


def _effusion(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    sides = [0, 1] if rng.random() < 0.3 else [int(rng.integers(2))]
    layer = cv.soft_layer()
    s = layer.shape[0]
    for side in sides:
        poly = lungs[side]
        lat = float(poly[:, 0].min()) if side == 0 else float(poly[:, 0].max())
        med = 0.5
        bottom = float(poly[:, 1].max())
        level = bottom - rng.uniform(0.1, 0.2)
        rise = rng.uniform(0.04, 0.09)
        t = np.linspace(0.0, 1.0, 10)
        xs = med + (lat - med) * t
        ys = level - rise * t**2.5
        edge = np.stack([xs, ys], 1)
        fill = np.concatenate([edge, [[lat, 1.0], [med, 1.0]]])
        cv2.fillPoly(layer, [_pts(fill, s)], 1.0, cv2.LINE_8, _SHIFT)
        cv.box("Effusion", min(lat, med), level - rise, max(lat, med), bottom)


def _infiltration(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    layer = cv.soft_layer()
    s = layer.shape[0]
    sides = [0, 1] if rng.random() < 0.75 else [int(rng.integers(2))]
    for side in sides:
        pts = []
        for _ in range(int(rng.integers(10, 18))):
            x, y = _sample_in_lung(lung_u8, rng, side)
            rad = rng.uniform(0.018, 0.032)
            cv2.circle(
                layer,
                (round(x * s * _ONE), round(y * s * _ONE)),
                round(rad * s * _ONE),
                float(rng.uniform(0.6, 0.9)),
                -1,
                cv2.LINE_8,
                _SHIFT,
            )
            pts.append((x, y))
        cv.box_points("Infiltration", np.array(pts), margin=0.03)


def _mass(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.15, 0.7))
    rad = rng.uniform(0.06, 0.095)
    _blob(cv, x, y, rad, rng, extra=rng.uniform(0.06, 0.14))
    cv.box("Mass", x - rad, y - rad, x + rad, y + rad)


def _nodule(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    for _ in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
        x, y = _sample_in_lung(lung_u8, rng, None, (0.15, 0.75))
        rad = rng.uniform(0.022, 0.032)
        _blob(cv, x, y, rad, rng, extra=rng.uniform(0.12, 0.2))
        cv.box("Nodule", x - rad, y - rad, x + rad, y + rad)


def _blob(cv: _Canvas, x: float, y: float, rad: float, rng: np.random.Generator, extra: float) -> None:
    """Round, slightly lobulated dense lesion brighter than soft tissue."""
    n = 16
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = rad * (1.0 + 0.12 * rng.standard_normal(n).clip(-1.5, 1.5))
    pts = np.stack([x + rr * np.cos(ang), y + rr * np.sin(ang)], 1)
    p = _pts(pts, cv.r)
    cv2.fillPoly(cv.opacity, [p], 1.0, cv2.LINE_8, _SHIFT)
    cv2.fillPoly(cv.extra, [p], float(extra), cv2.LINE_8, _SHIFT)


def _pneumonia(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.45, 0.85))
    haze = cv.haze_layer()
    h = haze.shape[0]
    rx, ry = rng.uniform(0.09, 0.13), rng.uniform(0.08, 0.12)
    cv2.ellipse(
        haze,
        (round(x * h * _ONE), round(y * h * _ONE)),
        (round(rx * h * _ONE), round(ry * h * _ONE)),
        float(rng.uniform(0, 180)),
        0,
        360,
        float(rng.uniform(0.8, 0.95)),
        -1,
        cv2.LINE_8,
        _SHIFT,
    )
    soft = cv.soft_layer()
    s = soft.shape[0]
    for _ in range(8):
        bx, by = x + rng.uniform(-rx, rx) * 0.8, y + rng.uniform(-ry, ry) * 0.8
        cv2.circle(
            soft,
            (round(bx * s * _ONE), round(by * s * _ONE)),
            round(rng.uniform(0.02, 0.04) * s * _ONE),
            0.4,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
    cv.box("Pneumonia", x - rx, y - ry, x + rx, y + ry)


def _pneumothorax(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    poly = lungs[side]
    r = cv.r
    anchor = np.array([0.5 - a.medial if side == 0 else 0.5 + a.medial, float(poly[:, 1].max())])
    f = rng.uniform(0.6, 0.78)
    shrunk = anchor + f * (poly - anchor)
    outer = np.zeros((r, r), np.uint8)
    cv2.fillPoly(outer, [_pts(poly, r)], 1, cv2.LINE_8, _SHIFT)
    cv2.fillPoly(outer, [_pts(shrunk, r)], 0, cv2.LINE_8, _SHIFT)
    gap = cv2.GaussianBlur(outer.astype(np.float32), (0, 0), 0.7)
    ptx += gap
    cv.extra -= gap * rng.uniform(0.04, 0.08)
    # the visceral pleural line: the collapsed lung's edge except its diaphragmatic part
    edge = shrunk[shrunk[:, 1] < anchor[1] - 0.03]
    cv2.polylines(cv.extra, [_pts(edge, r)], False, float(rng.uniform(0.12, 0.2)), 1, cv2.LINE_8, _SHIFT)
    cv.opacity += cv2.fillPoly(np.zeros((r, r), np.float32), [_pts(shrunk, r)], 0.12, cv2.LINE_8, _SHIFT)
    lo, hi = poly.min(axis=0), np.array([poly[:, 0].max(), anchor[1] - 0.05])
    cv.box("Pneumothorax", lo[0], lo[1], hi[0], hi[1])


def _consolidation(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    poly = lungs[side]
    lat = float(poly[:, 0].min()) if side == 0 else float(poly[:, 0].max())
    top = float(poly[:, 1].min())
    bottom = float(poly[:, 1].max())
    fissure = top + (bottom - top) * rng.uniform(0.3, 0.6)
    height = rng.uniform(0.1, 0.18)
    width = rng.uniform(0.13, 0.2)
    x0 = lat + (0.01 if side == 0 else -0.01)
    x1 = x0 + (width if side == 0 else -width)
    tilt = rng.uniform(-0.02, 0.02)
    wedge = np.array(
        [
            [x0, fissure],
            [x1, fissure + tilt],
            [x1 + (x0 - x1) * 0.35, fissure + height],
            [x0, fissure + height * rng.uniform(0.7, 1.0)],
        ]
    )
    cv2.fillPoly(cv.opacity, [_pts(wedge, cv.r)], float(rng.uniform(0.85, 1.0)), cv2.LINE_8, _SHIFT)
    cv.box_points("Consolidation", wedge)


def _edema(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    haze = cv.haze_layer()
    h = haze.shape[0]
    level = float(rng.uniform(0.5, 0.7))
    for side, hx in ((0, 0.5 - a.medial - 0.05), (1, 0.5 + a.medial + 0.05)):
        hy = rng.uniform(0.4, 0.48)
        rx, ry = rng.uniform(0.1, 0.13), rng.uniform(0.13, 0.17)
        cv2.ellipse(
            haze,
            (round(hx * h * _ONE), round(hy * h * _ONE)),
            (round(rx * h * _ONE), round(ry * h * _ONE)),
            0.0,
            0,
            360,
            level,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
        cv.box("Edema", hx - rx, hy - ry, hx + rx, hy + ry)
        lat = float(lungs[side][:, 0].min()) if side == 0 else float(lungs[side][:, 0].max())
        inward = 1.0 if side == 0 else -1.0
        bottom = float(lungs[side][:, 1].max())
        for k in range(4):
            y = bottom - 0.04 - 0.022 * k
            p = np.array([[lat + inward * 0.01, y], [lat + inward * 0.05, y]])
            cv2.polylines(cv.extra, [_pts(p, cv.r)], False, 0.1, 1, cv2.LINE_8, _SHIFT)


def _emphysema(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    for side in (0, 1):
        cv.box_points("Emphysema", lungs[side])


def _fibrosis(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    r = cv.r
    oy, ox = rng.integers(0, 2 * cv.tpl.pad + 1, size=2)
    net = cv.tpl.net[oy : oy + r, ox : ox + r]
    mask = (lung_u8 > 0) * cv.tpl.periphery
    amp = float(rng.uniform(0.22, 0.32))
    cv.extra += net * mask * amp
    cv.opacity += net * mask * 0.5
    for side in (0, 1):
        lo_y, hi_y = _lung_band(lungs, side, 0.35, 1.0)
        xs = lungs[side][:, 0]
        cv.box("Fibrosis", float(xs.min()), lo_y, float(xs.max()), hi_y)


def _pleural_thickening(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    sides = [0, 1] if rng.random() < 0.35 else [int(rng.integers(2))]
    t = rng.uniform(0.022, 0.035)
    for side in sides:
        poly = lungs[side]
        top, bottom = float(poly[:, 1].min()), float(poly[:, 1].max())
        if rng.random() < 0.7:  # lateral wall
            lat_half = poly[:, 0] < 0.3 if side == 0 else poly[:, 0] > 0.7
            sel = poly[lat_half & (poly[:, 1] > top + 0.12) & (poly[:, 1] < bottom - 0.04)]
        else:  # apical cap
            sel = poly[poly[:, 1] < top + 0.07]
            sel = sel[np.argsort(sel[:, 0])]
        if len(sel) < 2:
            continue
        p = _pts(sel, cv.r)
        cv2.polylines(cv.opacity, [p], False, 1.0, _thick(2 * t, cv.r), cv2.LINE_8, _SHIFT)
        cv2.polylines(cv.extra, [p], False, 0.05, _thick(2 * t, cv.r), cv2.LINE_8, _SHIFT)
        cv.box_points("Pleural_Thickening", sel, margin=t)


def _hernia(
    cv: _Canvas, a: _Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    r = cv.r
    rad = rng.uniform(0.05, 0.075)
    x = 0.5 + rng.uniform(-0.02, 0.05)
    y = a.heart_cy + a.heart_h * rng.uniform(0.1, 0.5)
    centre = (round(x * r * _ONE), round(y * r * _ONE))
    radius = round(rad * r * _ONE)
    bubble = np.zeros((r, r), np.float32)
    cv2.circle(bubble, centre, radius, 1.0, -1, cv2.LINE_8, _SHIFT)
    level = y + rad * rng.uniform(0.1, 0.45)  # air-fluid level: fluid below stays dense
    bubble[int(level * r) :, :] = 0.0
    cv.extra -= bubble * rng.uniform(0.25, 0.35)
    cv2.circle(cv.extra, centre, radius, 0.12, _thick(0.008, r), cv2.LINE_8, _SHIFT)
    cv.box("Hernia", x - rad, y - rad, x + rad, y + rad)


_FINDINGS = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}
