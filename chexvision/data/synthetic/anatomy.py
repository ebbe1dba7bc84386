"""Anatomy of the synthetic chest X-rays: per-patient geometry, lung outlines, heart and mediastinum, body tissue.

Geometry is in the canonical frame (normalised units, x to the image's right = the patient's left). A patient's
parameters are drawn once and shared by their follow-up images; each image jitters them (breathing, heart size)
and applies the findings that change anatomy (Emphysema, Fibrosis, Atelectasis, Cardiomegaly).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from chexvision.data.synthetic.textures import N_VARIANTS, ONE, SHIFT, fixed_pts

__all__ = ["Anatomy", "draw_heart", "draw_tissue", "image_anatomy", "lung_polygon", "patient_anatomy"]


@dataclass
class Anatomy:
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
        "variant": float(rng.integers(N_VARIANTS)),
    }


def lung_polygon(a: Anatomy, left: bool) -> np.ndarray:
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


def image_anatomy(patient: dict[str, float], labels: frozenset[str], rng: np.random.Generator) -> Anatomy:
    breath = rng.uniform(-0.02, 0.02)
    base = patient["base_y"] + breath
    base_y = [base, base + rng.uniform(0.0, 0.025)]  # the left hemidiaphragm usually sits lower
    dome = [patient["dome"], patient["dome"] + rng.uniform(-0.01, 0.01)]
    a = Anatomy(
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


def draw_heart(canvas: np.ndarray, a: Anatomy, r: int) -> None:
    centre = (round(a.heart_cx * r * ONE), round(a.heart_cy * r * ONE))
    axes = (round(a.heart_w * r * ONE), round(a.heart_h * r * ONE))
    cv2.ellipse(canvas, centre, axes, -12.0, 0, 360, 255, -1, cv2.LINE_8, SHIFT)
    # mediastinum above the heart: the great vessels
    top = np.array(
        [
            [0.5 - a.medial - 0.005, 0.22],
            [0.5 + a.medial + 0.01, 0.22],
            [0.5 + a.medial + 0.02, a.heart_cy],
            [0.5 - a.medial - 0.01, a.heart_cy],
        ]
    )
    cv2.fillPoly(canvas, [fixed_pts(top, r)], 255, cv2.LINE_8, SHIFT)


def draw_tissue(a: Anatomy, r: int, ramp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    cv2.fillPoly(img, [fixed_pts(outline, r)], float(level), cv2.LINE_8, SHIFT)
    cv2.rectangle(
        img,
        (round(0.475 * r * ONE), 0),
        (round(0.525 * r * ONE), r * ONE),
        float(level + 0.06),
        -1,
        cv2.LINE_8,
        SHIFT,
    )
    tissue: np.ndarray = cv2.GaussianBlur(img, (0, 0), max(0.7, r / 100))
    tissue += ramp * (rng.uniform(0.03, 0.12) * (tissue > bg + 0.05))
    return tissue
