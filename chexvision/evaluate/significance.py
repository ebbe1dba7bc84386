"""Per-class tests of two models scored on the same images: DeLong's test and Holm's step-down correction.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) compare two correlated AUROCs through the structural components
of the Mann-Whitney statistic: for model r, V10_r(x_i) is the share of negatives that positive i outranks (ties
count 1/2) and V01_r(y_j) the share of positives that outrank negative j. Each AUC is the mean of either; the
2x2 covariances S10 (over positives) and S01 (over negatives) give var(AUC_a - AUC_b) = L (S10/m + S01/n) L' with
L = (1, -1), and z = (AUC_a - AUC_b) / sqrt(var) is referred to a standard normal. The components come from
midranks (Sun & Xu, IEEE Signal Processing Letters 2014), O(N log N) per class.

DeLong treats images as independent. Follow-up images of one patient are correlated, so with several images per
patient its variance is somewhat too small; the macro difference keeps the paired patient bootstrap for that reason.

Holm (Scand. J. Statistics 1979) controls the family-wise error rate over the classes tested: sort the p-values,
multiply the i-th smallest by (m - i + 1), make the sequence non-decreasing and clip it at 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from chexvision.labels import LABELS

__all__ = ["delong_components", "delong_test", "holm_adjust", "per_class_delong"]


def delong_components(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AUCs [K], V10 [K, m], V01 [K, n]) for K score vectors (`scores` [K, N]) on one binary truth."""
    y = np.asarray(y_true).ravel() > 0.5
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs both positive and negative images")
    pos, neg = s[:, y], s[:, ~y]
    ranks = rankdata(s, axis=1)
    # midrank among all images minus midrank within its own class = images of the other class below it (+ ties/2)
    neg_below = ranks[:, y] - rankdata(pos, axis=1)
    pos_below = ranks[:, ~y] - rankdata(neg, axis=1)
    v10 = neg_below / n
    v01 = 1.0 - pos_below / m
    return v10.mean(axis=1), v10, v01


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float | None]:
    """DeLong's two-sided test of AUROC(a) = AUROC(b) on the same images.

    Returns `auc_a`, `auc_b`, `diff`, `se` (of the difference), `z` and `p_value`. Needs at least two positives and
    two negatives (a covariance over one component is undefined). With a zero variance (e.g. identical scores)
    `z` is None and `p_value` is 1.0 when the AUCs agree, 0.0 when they differ.
    """
    y = np.asarray(y_true).ravel() > 0.5
    if min(int(y.sum()), int((~y).sum())) < 2:
        raise ValueError("DeLong's test needs at least two positive and two negative images")
    aucs, v10, v01 = delong_components(y, np.vstack([score_a, score_b]))
    contrast = np.array([1.0, -1.0])
    var = float(contrast @ (np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]) @ contrast)
    diff = float(aucs[0] - aucs[1])
    out: dict[str, float | None] = {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff}
    if var <= 1e-15:
        return out | {"se": 0.0, "z": None, "p_value": 1.0 if abs(diff) < 1e-12 else 0.0}
    z = diff / np.sqrt(var)
    return out | {"se": float(np.sqrt(var)), "z": float(z), "p_value": float(2.0 * norm.sf(abs(z)))}


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (reject H_i at level alpha when adjusted <= alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


def per_class_delong(
    y14: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, alpha: float = 0.05, labels: Sequence[str] = LABELS
) -> dict[str, Any]:
    """DeLong per class with Holm's correction over the classes that could be tested.

    Returns `{"alpha", "tested", "significant": [labels], "per_class": {label: row | None}}`; a row has the DeLong
    fields, `positives`, `p_holm` and `significant`; None: fewer than two positives or negatives of that class.
    """
    rows: dict[str, dict[str, Any] | None] = {}
    for k, label in enumerate(labels):
        y = y14[:, k] > 0.5
        if min(int(y.sum()), int((~y).sum())) < 2:
            rows[label] = None
            continue
        rows[label] = {**delong_test(y, p_a[:, k], p_b[:, k]), "positives": int(y.sum())}
    tested = [label for label, row in rows.items() if row is not None]
    for label, adjusted in zip(tested, holm_adjust([_p(rows[label]) for label in tested]), strict=True):
        row = rows[label]
        assert row is not None
        row["p_holm"] = adjusted
        row["significant"] = bool(adjusted <= alpha)
    significant = [label for label in tested if (row := rows[label]) is not None and row["significant"]]
    return {"alpha": alpha, "tested": len(tested), "significant": significant, "per_class": rows}


def _p(row: Mapping[str, Any] | None) -> float:
    assert row is not None
    return float(row["p_value"])
