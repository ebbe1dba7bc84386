"""Bootstrap confidence intervals that resample PATIENTS, not images.

Images of one patient are correlated (follow-up studies), so resampling images would understate the
variance. Each replicate draws patients with replacement (seeded `numpy.random.Generator`) and keeps all
of their images. The interval is the percentile interval of the replicate statistics; a replicate in which
a class has no positives leaves that class out of that replicate (and out of its macro average).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from chexvision.engine.metrics import auprc, auroc
from chexvision.labels import LABELS

__all__ = [
    "bootstrap_classification",
    "bootstrap_samples",
    "paired_bootstrap",
    "patient_groups",
    "percentile_interval",
]

Interval = tuple[float, float]


def patient_groups(patient_ids: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Image indices of each patient (in order of first appearance of the sorted ids)."""
    ids = np.asarray(patient_ids)
    order = np.argsort(ids, kind="stable")
    _, starts = np.unique(ids[order], return_index=True)
    return np.split(order, starts[1:])


def bootstrap_samples(patient_ids: Sequence[int] | np.ndarray, n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield `n` index arrays, each the images of a with-replacement sample of the patients."""
    groups = patient_groups(patient_ids)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picked = rng.integers(0, len(groups), size=len(groups))
        yield np.concatenate([groups[i] for i in picked])


def percentile_interval(values: Sequence[float], alpha: float = 0.05) -> Interval | None:
    """(lo, hi) percentile interval of the finite values; None when there are none."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return None
    lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _per_class(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-class AUROC/AUPRC with NaN for classes without both outcomes; one scikit-learn call for all columns
    (validation overhead dominates per-column calls, which matters over thousands of replicates)."""
    yb = y > 0.5
    n_pos = yb.sum(axis=0)
    defined = (n_pos > 0) & (n_pos < len(yb))
    out = np.full(y.shape[1], np.nan)
    if defined.any():
        fn = roc_auc_score if metric == "auc" else average_precision_score
        out[defined] = np.atleast_1d(fn(yb[:, defined], p[:, defined], average=None))
    return out


def bootstrap_classification(
    y14: np.ndarray,
    p14: np.ndarray,
    ybin: np.ndarray,
    pbin: np.ndarray,
    patient_ids: Sequence[int] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, object]:
    """Percentile CIs for per-class/macro AUROC and AUPRC and the binary AUROC/AUPRC.

    Returns `{"n": n, "alpha": alpha, "macro_auc": [lo, hi], "per_class_auc": {label: [lo, hi] | None}, ...}`.
    """
    auc_rep, ap_rep, bin_auc, bin_ap = [], [], [], []
    for idx in bootstrap_samples(patient_ids, n, seed):
        auc_rep.append(_per_class("auc", y14[idx], p14[idx]))
        ap_rep.append(_per_class("auprc", y14[idx], p14[idx]))
        bin_auc.append(auroc(ybin[idx], pbin[idx]))
        bin_ap.append(auprc(ybin[idx], pbin[idx]))
    out: dict[str, object] = {"n": n, "alpha": alpha, "seed": seed, "unit": "patient"}
    for key, reps in (("auc", np.array(auc_rep)), ("auprc", np.array(ap_rep))):
        full = _per_class(key, y14, p14)
        keep = np.isfinite(full)  # classes undefined on the full set stay out of every macro
        with np.errstate(all="ignore"):
            macros = np.nanmean(np.where(keep, reps, np.nan), axis=1) if keep.any() else np.array([])
        out[f"macro_{key}"] = _as_list(percentile_interval(list(macros), alpha))
        out[f"per_class_{key}"] = {
            name: _as_list(percentile_interval(list(reps[:, k]), alpha)) if keep[k] else None
            for k, name in enumerate(LABELS)
        }
    out["binary_auc"] = _as_list(percentile_interval([v for v in bin_auc if v is not None], alpha))
    out["binary_auprc"] = _as_list(percentile_interval([v for v in bin_ap if v is not None], alpha))
    return out


def _as_list(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def _macro_auc(y14: np.ndarray, p14: np.ndarray, keep: np.ndarray) -> float:
    vals = _per_class("auc", y14, p14)[keep]
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def paired_bootstrap(
    y14: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    patient_ids: Sequence[int] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | list[float] | int | None]:
    """Paired bootstrap of macro AUROC(A) - macro AUROC(B) on the same images and the same patient resamples.

    The two-sided p-value is twice the smaller tail of the replicate differences around zero (clipped to 1).
    """
    keep = np.isfinite(_per_class("auc", y14, p_a))
    diffs = []
    for idx in bootstrap_samples(patient_ids, n, seed):
        diffs.append(_macro_auc(y14[idx], p_a[idx], keep) - _macro_auc(y14[idx], p_b[idx], keep))
    arr = np.asarray([d for d in diffs if np.isfinite(d)])
    point = _macro_auc(y14, p_a, keep) - _macro_auc(y14, p_b, keep)
    p_value = min(1.0, 2.0 * min(float(np.mean(arr <= 0)), float(np.mean(arr >= 0)))) if arr.size else None
    return {
        "diff": point,
        "ci": _as_list(percentile_interval(list(arr), alpha)),
        "p_value": p_value,
        "n": n,
        "seed": seed,
    }
