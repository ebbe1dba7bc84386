"""2-fold cross-fitting by patient: thresholds and calibration for a set that has no validation predictions.

Fitting the operating points and the temperature on the very images they are then measured on is optimistic. When
there is no validation set (`evaluate --predictions` without `--val-predictions`, or `evaluate --split val`), the
patients are split in two seeded halves; what is fitted on one half is measured on the other. Operating points:
every image is decided by the threshold fitted on the other half, and sensitivity, specificity, F1... are counted
over all images (the `threshold` shown is the mean of the two, `fold_thresholds` both). Calibration: each half is
measured with the temperature (and per-class scaling) fitted on the other half, and every figure is the
image-weighted mean of the two halves' figures (the usual k-fold estimate); `fold_calibration` keeps both halves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.evaluate.thresholds import metrics_at_threshold

if TYPE_CHECKING:
    from chexvision.evaluate.predictions import Predictions

__all__ = ["CROSS_FITTED", "crossfit_calibration", "crossfit_operating_points", "patient_folds", "subset"]

CROSS_FITTED = "2-fold cross-fitted by patient"
_SUMMED = frozenset({"count", "counts", "n_images", "images", "positives", "negatives"})  # counts add up over folds


def patient_folds(patient_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fold (0 or 1) of every image: a seeded half of the patients is fold 1; a patient's images share a fold."""
    unique, inverse = np.unique(np.asarray(patient_ids), return_inverse=True)
    fold_of = np.zeros(len(unique), dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(unique))[len(unique) // 2 :]] = 1
    return fold_of[inverse]


def subset(pred: Predictions, mask: np.ndarray) -> Predictions:
    """The rows of `pred` where `mask` holds."""
    rows = np.flatnonzero(mask)
    return replace(
        pred,
        filenames=[pred.filenames[i] for i in rows],
        patient_ids=pred.patient_ids[rows],
        y14=pred.y14[rows],
        ybin=pred.ybin[rows],
        p14=pred.p14[rows],
        pbin=pred.pbin[rows],
        defined=None if pred.defined is None else pred.defined[rows],
    )


def _both_classes(pred: Predictions) -> bool:
    return len(pred) > 0 and pred.ybin.min() != pred.ybin.max()


def crossfit_operating_points(
    test: Predictions, folds: np.ndarray, choose: Callable[[Predictions], dict[str, float]]
) -> dict[str, Any]:
    """`choose(ref) -> {rule: threshold}` fitted on each half, applied to the other; {} when a half has one class."""
    halves = [subset(test, folds == f) for f in (0, 1)]
    if not all(_both_classes(h) for h in halves):
        return {}
    fitted = [choose(halves[1 - f]) for f in (0, 1)]  # fitted[f]: chosen on the other half, used on half f
    out: dict[str, Any] = {}
    for rule in fitted[0]:
        thresholds = np.where(folds == 0, fitted[0][rule], fitted[1][rule])
        row: dict[str, Any] = {**metrics_at_threshold(test.ybin, (test.pbin >= thresholds).astype(np.float64), 0.5)}
        row["threshold"] = float(np.mean([fitted[0][rule], fitted[1][rule]]))
        row["fold_thresholds"] = [float(fitted[0][rule]), float(fitted[1][rule])]
        out[rule] = row
    return out


def crossfit_calibration(
    test: Predictions, folds: np.ndarray, calibrate: Callable[[Predictions, Predictions], dict[str, Any]]
) -> dict[str, Any] | None:
    """`calibrate(ref, measured)` on each half with the other as `ref`, merged by `mean_of_folds`; None when a half
    is empty."""
    halves = [subset(test, folds == f) for f in (0, 1)]
    if not all(len(h) for h in halves):
        return None
    blocks = [calibrate(halves[1 - f], halves[f]) for f in (0, 1)]
    merged = mean_of_folds(blocks, [len(h) for h in halves])
    merged["fold_calibration"] = blocks
    return merged


def mean_of_folds(blocks: Sequence[Any], weights: Sequence[float]) -> Any:
    """Weighted mean of numbers (and of equal-length number lists, e.g. curve points), recursively through dicts;
    counts (`_SUMMED` keys) added up; True only where every block says True; anything else (names, None in one
    block, lists of unequal length) from the first block."""
    first = blocks[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(b, dict) and k in b for b in blocks)]
        return {k: _sum(b[k] for b in blocks) if k in _SUMMED else mean_of_folds([b[k] for b in blocks], weights)
                for k in keys}  # fmt: skip
    if isinstance(first, bool | np.bool_):
        return bool(all(blocks))
    numbers = (int, float, np.integer, np.floating)
    if isinstance(first, numbers) and all(isinstance(b, numbers) and not isinstance(b, bool) for b in blocks):
        value = float(np.average(np.asarray(blocks, dtype=np.float64), weights=weights))
        return value if isinstance(first, float | np.floating) or not value.is_integer() else int(value)
    if isinstance(first, list) and all(isinstance(b, list) and len(b) == len(first) for b in blocks):
        return [mean_of_folds([b[i] for b in blocks], weights) for i in range(len(first))]
    return first


def _sum(values: Any) -> Any:
    values = list(values)
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [_sum(col) for col in zip(*values, strict=True)]
    if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values[0]
