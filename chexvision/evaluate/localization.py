"""Scoring class-activation maps against bounding boxes (NIH `BBox_List_2017.csv` format).

Two measures, per class and over all boxes, on the evaluated images that have boxes:

- IoBB (Wang et al., CVPR 2017): the map is thresholded at `cam_threshold` of its maximum, the largest
  connected region gives the predicted box, and IoBB = |predicted ∩ ground truth| / |predicted|. A box is
  found when IoBB >= T, for T in 0.1, 0.25, 0.5.
- Pointing game (Zhang et al., ECCV 2016): a hit when the map's maximum lies inside a ground-truth box (for
  Grad-CAM, the centre of the strongest cell of the native map: see `gradcam.peak_location`).

Each measure comes with its chance level: for pointing, the share of the image the boxes cover (the hit rate of
a uniformly random point, exact); for IoBB, the same predicted box placed uniformly at random (Monte Carlo,
seeded), so a map that is merely large or merely central gets no credit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.stats import norm

from chexvision.data.bbox import Box
from chexvision.labels import LABELS

__all__ = [
    "IOBB_THRESHOLDS",
    "CamRecord",
    "box_mask",
    "cam_box",
    "iobb",
    "pointing_hit",
    "score_localization",
]

IOBB_THRESHOLDS = (0.1, 0.25, 0.5)


@dataclass
class CamRecord:
    """One (image, class) pair: the map at model input size and that class's boxes in the same frame."""

    filename: str
    label: str
    cam: np.ndarray
    boxes: list[Box]
    peak: tuple[int, int] | None = None  # (y, x) for the pointing game; None: the map's argmax


def cam_box(cam: np.ndarray, cam_threshold: float = 0.5) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the largest connected region where cam >= threshold * max."""
    mask = cam >= cam_threshold * float(cam.max()) if cam.max() > 0 else np.ones_like(cam, dtype=bool)
    labelled, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labelled, index=np.arange(1, count + 1))
        mask = labelled == int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_mask(boxes: Sequence[Box], shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the union of `boxes` (pixel coordinates) in an image of `shape`."""
    mask = np.zeros(shape[:2], dtype=bool)
    for b in boxes:
        x0, y0 = max(int(np.floor(b.x)), 0), max(int(np.floor(b.y)), 0)
        x1, y1 = int(np.ceil(b.x + b.w)), int(np.ceil(b.y + b.h))
        mask[y0:y1, x0:x1] = True
    return mask


def iobb(pred: tuple[int, int, int, int], truth: np.ndarray) -> float:
    """|pred ∩ truth| / |pred| with `truth` a boolean mask of the ground-truth boxes."""
    x0, y0, x1, y1 = pred
    area = (x1 - x0) * (y1 - y0)
    return float(truth[y0:y1, x0:x1].sum()) / area if area > 0 else 0.0


def pointing_hit(cam: np.ndarray, truth: np.ndarray, peak: tuple[int, int] | None = None) -> bool:
    """Whether the map's maximum (or the given `peak`, (y, x)) lies in the ground-truth mask."""
    y, x = peak if peak is not None else np.unravel_index(int(np.argmax(cam)), cam.shape)
    return bool(truth[y, x])


def _random_iobb(pred: tuple[int, int, int, int], truth: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    x0, y0, x1, y1 = pred
    w, h = x1 - x0, y1 - y0
    height, width = truth.shape
    xs = rng.integers(0, width - w + 1, size=n)
    ys = rng.integers(0, height - h + 1, size=n)
    return np.array([iobb((int(x), int(y), int(x) + w, int(y) + h), truth) for x, y in zip(xs, ys, strict=True)])


def _pointing_test(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """One-sided test of pointing hits against chance: hits are a Poisson-binomial count under chance (each
    record its own hit probability); normal approximation with continuity correction."""
    chance = np.array([r["pointing_chance"] for r in rows])
    hits = float(sum(r["pointing"] for r in rows))
    mean, var = float(chance.sum()), float((chance * (1 - chance)).sum())
    z = (hits - 0.5 - mean) / np.sqrt(var) if var > 0 else float("inf") if hits > mean else 0.0
    return {"pointing_hits": hits, "pointing_expected_hits": mean, "pointing_p_value": float(norm.sf(z))}


def score_localization(
    records: Sequence[CamRecord],
    *,
    thresholds: Sequence[float] = IOBB_THRESHOLDS,
    cam_threshold: float = 0.5,
    chance_samples: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Per class and overall: n, pointing-game accuracy, IoBB accuracy at each T, and their chance levels."""
    rng = np.random.default_rng(seed)
    rows = []
    for rec in records:
        truth = box_mask(rec.boxes, rec.cam.shape)
        pred = cam_box(rec.cam, cam_threshold)
        value = iobb(pred, truth)
        chance = _random_iobb(pred, truth, rng, chance_samples)
        row: dict[str, Any] = {
            "label": rec.label,
            "pointing": float(pointing_hit(rec.cam, truth, rec.peak)),
            "pointing_chance": float(truth.mean()),
            "iobb": value,
        }
        for t in thresholds:
            row[f"iobb@{t:g}"] = float(value >= t)
            row[f"iobb@{t:g}_chance"] = float(np.mean(chance >= t))
        rows.append(row)
    keys = ["pointing", "pointing_chance", "iobb"] + [
        f"iobb@{t:g}{suffix}" for t in thresholds for suffix in ("", "_chance")
    ]

    def summarise(sub: list[dict[str, Any]]) -> dict[str, Any]:
        return {"n": len(sub), **{k: float(np.mean([r[k] for r in sub])) for k in keys}, **_pointing_test(sub)}

    per_class = {label: summarise(sub) for label in LABELS if (sub := [r for r in rows if r["label"] == label])}
    return {
        "overall": summarise(rows) if rows else {"n": 0},
        "per_class": per_class,
        "cam_threshold": cam_threshold,
        "thresholds": list(thresholds),
        "chance_samples": chance_samples,
    }
