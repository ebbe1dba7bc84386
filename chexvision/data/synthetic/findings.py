"""The 14 findings planted in the synthetic chest X-rays, each a painter on the working layers of one image.

Size and contrast are chosen so each finding is visible at 64 px; position, size and intensity are random so no
global pixel statistic gives a label away; focal lesions are placed in lung not hidden by the heart shadow.

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

The anatomical part of a finding (raised diaphragm, large heart, flat diaphragms, volume loss) is applied by
`anatomy.image_anatomy`; the painters here add opacity, brightness and the finding's box.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from chexvision.data.synthetic.anatomy import Anatomy
from chexvision.data.synthetic.textures import ONE, SHIFT, Templates, fixed_pts, thickness_px

__all__ = ["FINDINGS", "Canvas"]


class Canvas:
    """Working layers of one image at R x R."""

    def __init__(self, tpl: Templates) -> None:
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
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = a.collapsed_side
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.5, 0.85))
    half = rng.uniform(0.06, 0.11)
    ang = rng.uniform(-0.35, 0.35)
    p = np.array(
        [[x - half * math.cos(ang), y - half * math.sin(ang)], [x + half * math.cos(ang), y + half * math.sin(ang)]]
    )
    t = rng.uniform(0.018, 0.03)
    cv2.polylines(cv.opacity, [fixed_pts(p, cv.r)], False, 1.0, thickness_px(t, cv.r), cv2.LINE_8, SHIFT)
    cv2.polylines(cv.extra, [fixed_pts(p, cv.r)], False, 0.06, thickness_px(t, cv.r), cv2.LINE_8, SHIFT)
    cv.box_points("Atelectasis", p, margin=t + 0.01)


def _cardiomegaly(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    cv.box(
        "Cardiomegaly",
        a.heart_cx - a.heart_w * 1.02,
        a.heart_cy - a.heart_h * 1.05,
        a.heart_cx + a.heart_w * 1.02,
        a.heart_cy + a.heart_h * 1.05,
    )


def _effusion(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
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
        cv2.fillPoly(layer, [fixed_pts(fill, s)], 1.0, cv2.LINE_8, SHIFT)
        cv.box("Effusion", min(lat, med), level - rise, max(lat, med), bottom)


def _infiltration(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
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
                (round(x * s * ONE), round(y * s * ONE)),
                round(rad * s * ONE),
                float(rng.uniform(0.6, 0.9)),
                -1,
                cv2.LINE_8,
                SHIFT,
            )
            pts.append((x, y))
        cv.box_points("Infiltration", np.array(pts), margin=0.03)


def _mass(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.15, 0.7))
    rad = rng.uniform(0.06, 0.095)
    _blob(cv, x, y, rad, rng, extra=rng.uniform(0.06, 0.14))
    cv.box("Mass", x - rad, y - rad, x + rad, y + rad)


def _nodule(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    for _ in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
        x, y = _sample_in_lung(lung_u8, rng, None, (0.15, 0.75))
        rad = rng.uniform(0.022, 0.032)
        _blob(cv, x, y, rad, rng, extra=rng.uniform(0.12, 0.2))
        cv.box("Nodule", x - rad, y - rad, x + rad, y + rad)


def _blob(cv: Canvas, x: float, y: float, rad: float, rng: np.random.Generator, extra: float) -> None:
    """Round, slightly lobulated dense lesion brighter than soft tissue."""
    n = 16
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = rad * (1.0 + 0.12 * rng.standard_normal(n).clip(-1.5, 1.5))
    pts = np.stack([x + rr * np.cos(ang), y + rr * np.sin(ang)], 1)
    p = fixed_pts(pts, cv.r)
    cv2.fillPoly(cv.opacity, [p], 1.0, cv2.LINE_8, SHIFT)
    cv2.fillPoly(cv.extra, [p], float(extra), cv2.LINE_8, SHIFT)


def _pneumonia(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    x, y = _sample_in_lung(lung_u8, rng, side, _lung_band(lungs, side, 0.45, 0.85))
    haze = cv.haze_layer()
    h = haze.shape[0]
    rx, ry = rng.uniform(0.09, 0.13), rng.uniform(0.08, 0.12)
    cv2.ellipse(
        haze,
        (round(x * h * ONE), round(y * h * ONE)),
        (round(rx * h * ONE), round(ry * h * ONE)),
        float(rng.uniform(0, 180)),
        0,
        360,
        float(rng.uniform(0.8, 0.95)),
        -1,
        cv2.LINE_8,
        SHIFT,
    )
    soft = cv.soft_layer()
    s = soft.shape[0]
    for _ in range(8):
        bx, by = x + rng.uniform(-rx, rx) * 0.8, y + rng.uniform(-ry, ry) * 0.8
        cv2.circle(
            soft,
            (round(bx * s * ONE), round(by * s * ONE)),
            round(rng.uniform(0.02, 0.04) * s * ONE),
            0.4,
            -1,
            cv2.LINE_8,
            SHIFT,
        )
    cv.box("Pneumonia", x - rx, y - ry, x + rx, y + ry)


def _pneumothorax(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    side = int(rng.integers(2))
    poly = lungs[side]
    r = cv.r
    anchor = np.array([0.5 - a.medial if side == 0 else 0.5 + a.medial, float(poly[:, 1].max())])
    f = rng.uniform(0.6, 0.78)
    shrunk = anchor + f * (poly - anchor)
    outer = np.zeros((r, r), np.uint8)
    cv2.fillPoly(outer, [fixed_pts(poly, r)], 1, cv2.LINE_8, SHIFT)
    cv2.fillPoly(outer, [fixed_pts(shrunk, r)], 0, cv2.LINE_8, SHIFT)
    gap = cv2.GaussianBlur(outer.astype(np.float32), (0, 0), 0.7)
    ptx += gap
    cv.extra -= gap * rng.uniform(0.04, 0.08)
    # the visceral pleural line: the collapsed lung's edge except its diaphragmatic part
    edge = shrunk[shrunk[:, 1] < anchor[1] - 0.03]
    cv2.polylines(cv.extra, [fixed_pts(edge, r)], False, float(rng.uniform(0.12, 0.2)), 1, cv2.LINE_8, SHIFT)
    cv.opacity += cv2.fillPoly(np.zeros((r, r), np.float32), [fixed_pts(shrunk, r)], 0.12, cv2.LINE_8, SHIFT)
    lo, hi = poly.min(axis=0), np.array([poly[:, 0].max(), anchor[1] - 0.05])
    cv.box("Pneumothorax", lo[0], lo[1], hi[0], hi[1])


def _consolidation(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
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
    cv2.fillPoly(cv.opacity, [fixed_pts(wedge, cv.r)], float(rng.uniform(0.85, 1.0)), cv2.LINE_8, SHIFT)
    cv.box_points("Consolidation", wedge)


def _edema(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    haze = cv.haze_layer()
    h = haze.shape[0]
    level = float(rng.uniform(0.5, 0.7))
    for side, hx in ((0, 0.5 - a.medial - 0.05), (1, 0.5 + a.medial + 0.05)):
        hy = rng.uniform(0.4, 0.48)
        rx, ry = rng.uniform(0.1, 0.13), rng.uniform(0.13, 0.17)
        cv2.ellipse(
            haze,
            (round(hx * h * ONE), round(hy * h * ONE)),
            (round(rx * h * ONE), round(ry * h * ONE)),
            0.0,
            0,
            360,
            level,
            -1,
            cv2.LINE_8,
            SHIFT,
        )
        cv.box("Edema", hx - rx, hy - ry, hx + rx, hy + ry)
        lat = float(lungs[side][:, 0].min()) if side == 0 else float(lungs[side][:, 0].max())
        inward = 1.0 if side == 0 else -1.0
        bottom = float(lungs[side][:, 1].max())
        for k in range(4):
            y = bottom - 0.04 - 0.022 * k
            p = np.array([[lat + inward * 0.01, y], [lat + inward * 0.05, y]])
            cv2.polylines(cv.extra, [fixed_pts(p, cv.r)], False, 0.1, 1, cv2.LINE_8, SHIFT)


def _emphysema(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    for side in (0, 1):
        cv.box_points("Emphysema", lungs[side])


def _fibrosis(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
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
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
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
        p = fixed_pts(sel, cv.r)
        cv2.polylines(cv.opacity, [p], False, 1.0, thickness_px(2 * t, cv.r), cv2.LINE_8, SHIFT)
        cv2.polylines(cv.extra, [p], False, 0.05, thickness_px(2 * t, cv.r), cv2.LINE_8, SHIFT)
        cv.box_points("Pleural_Thickening", sel, margin=t)


def _hernia(
    cv: Canvas, a: Anatomy, lungs: list[np.ndarray], lung_u8: np.ndarray, rng: np.random.Generator, ptx: np.ndarray
) -> None:
    r = cv.r
    rad = rng.uniform(0.05, 0.075)
    x = 0.5 + rng.uniform(-0.02, 0.05)
    y = a.heart_cy + a.heart_h * rng.uniform(0.1, 0.5)
    centre = (round(x * r * ONE), round(y * r * ONE))
    radius = round(rad * r * ONE)
    bubble = np.zeros((r, r), np.float32)
    cv2.circle(bubble, centre, radius, 1.0, -1, cv2.LINE_8, SHIFT)
    level = y + rad * rng.uniform(0.1, 0.45)  # air-fluid level: fluid below stays dense
    bubble[int(level * r) :, :] = 0.0
    cv.extra -= bubble * rng.uniform(0.25, 0.35)
    cv2.circle(cv.extra, centre, radius, 0.12, thickness_px(0.008, r), cv2.LINE_8, SHIFT)
    cv.box("Hernia", x - rad, y - rad, x + rad, y + rad)


Painter = Callable[[Canvas, Anatomy, list[np.ndarray], np.ndarray, np.random.Generator, np.ndarray], None]

FINDINGS: dict[str, Painter] = {
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
