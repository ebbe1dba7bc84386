"""Classification metrics for the 14-label and the binary (abnormal vs `No Finding`) tasks.

Every number comes from scikit-learn; this module only decides what is defined: a class with no positives
(or no negatives) in the evaluated images has no AUROC/AUPRC (`None`, JSON null) and is left out of the
macro average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from chexvision.labels import LABELS

__all__ = [
    "auprc",
    "auroc",
    "classification_metrics",
    "macro",
    "per_class",
]


def _if_defined(score: Callable[..., Any], y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """`score` (a scikit-learn ranking metric) when both classes are present, else None (JSON null).

    AUROC is undefined with one class; AUPRC is then 1.0 or 0.0 whatever the scores, so it is not reported either.
    """
    y = np.asarray(y_true) > 0.5
    n_pos = int(np.count_nonzero(y))
    if not 0 < n_pos < len(y):
        return None
    return float(score(y, np.asarray(y_score, dtype=np.float64)))


def auroc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """Area under the ROC curve, or None when only one class is present."""
    return _if_defined(roc_auc_score, y_true, y_score)


def auprc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve), or None when only one class is present."""
    return _if_defined(average_precision_score, y_true, y_score)


def per_class(
    y_true: np.ndarray, y_score: np.ndarray, metric: str = "auroc", labels: Sequence[str] = LABELS
) -> dict[str, float | None]:
    """Per-class AUROC or AUPRC of (N, K) arrays, keyed by label name."""
    fn = auroc if metric == "auroc" else auprc
    if metric not in ("auroc", "auprc"):
        raise ValueError(f"unknown metric {metric!r}; expected auroc or auprc")
    return {name: fn(y_true[:, k], y_score[:, k]) for k, name in enumerate(labels)}


def macro(values: dict[str, float | None] | Sequence[float | None]) -> float | None:
    """Mean over the defined values (None ones excluded); None when none is defined."""
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    defined = [v for v in vals if v is not None]
    return float(np.mean(defined)) if defined else None


def classification_metrics(y14: np.ndarray, p14: np.ndarray, ybin: np.ndarray, pbin: np.ndarray) -> dict[str, object]:
    """Threshold-free metrics: per-class and macro AUROC/AUPRC, binary AUROC/AUPRC."""
    auc = per_class(y14, p14, "auroc")
    ap = per_class(y14, p14, "auprc")
    return {
        "macro_auc": macro(auc),
        "per_class_auc": auc,
        "macro_auprc": macro(ap),
        "per_class_auprc": ap,
        "binary_auc": auroc(ybin, pbin),
        "binary_auprc": auprc(ybin, pbin),
        "n_images": len(y14),
        "positives": {name: int(np.count_nonzero(y14[:, k] > 0.5)) for k, name in enumerate(LABELS)},
        "binary_positives": int(np.count_nonzero(np.asarray(ybin) > 0.5)),
    }
