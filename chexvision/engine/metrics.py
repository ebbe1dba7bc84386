"""Validation metrics the trainer tracks, and the defined-or-None rules every metric of the project follows.

A class whose labels are all one value (no positives, or no negatives) has no ROC curve: its AUROC/AUPRC is None
(JSON null), never 0.5, and it is left out of the macro average. `auroc`, `auprc` and `macro` are the one
implementation of that rule; the evaluation package (a layer above) imports them from here. Every number comes
from scikit-learn. The keys `validation_metrics` returns are rows of the metrics table (`METRICS` in
evaluate/metrics.py, split "val"); a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from chexvision.labels import LABELS

__all__ = ["auprc", "auroc", "macro", "validation_metrics"]


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


def macro(values: dict[str, float | None] | Sequence[float | None]) -> float | None:
    """Mean over the defined values (None ones excluded); None when none is defined."""
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    defined = [v for v in vals if v is not None]
    return float(np.mean(defined)) if defined else None


def validation_metrics(
    multi_prob: np.ndarray, binary_prob: np.ndarray, y14: np.ndarray, ybin: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics over one split: {"macro_auc", "binary_auc", "binary_f1" (at `threshold`), "per_class_auc"}."""
    per_class = [auroc(y14[:, k], multi_prob[:, k]) for k in range(y14.shape[1])]
    names = LABELS if len(per_class) == len(LABELS) else tuple(str(k) for k in range(len(per_class)))
    binary_true = ybin > 0.5
    return {
        "macro_auc": macro(per_class),
        "binary_auc": auroc(ybin, binary_prob),
        "binary_f1": float(f1_score(binary_true, binary_prob >= threshold, zero_division=0.0)),
        "per_class_auc": dict(zip(names, per_class, strict=True)),
    }
