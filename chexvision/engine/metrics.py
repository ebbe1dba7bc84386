"""Validation metrics the trainer tracks: per-class ROC AUC, macro AUC over defined classes, binary AUC and F1.

A class whose validation labels are all one value (no positives, or no negatives) has no ROC curve: its AUC is
None (JSON null), never 0.5, and it is left out of the macro average.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from chexvision.labels import LABELS

__all__ = ["auc_or_none", "macro_auc", "validation_metrics"]


def auc_or_none(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """ROC AUC of one binary target, or None when only one class is present."""
    y_true = np.asarray(y_true)
    positives = int((y_true > 0.5).sum())
    if positives == 0 or positives == len(y_true):
        return None
    return float(roc_auc_score(y_true > 0.5, y_score))


def macro_auc(per_class: list[float | None]) -> float | None:
    """Mean over the classes that have an AUC; None when none has."""
    defined = [a for a in per_class if a is not None]
    return float(np.mean(defined)) if defined else None


def validation_metrics(
    multi_prob: np.ndarray, binary_prob: np.ndarray, y14: np.ndarray, ybin: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics over one split: {"macro_auc", "binary_auc", "binary_f1", "per_class_auc": {label: auc|None}}."""
    per_class = [auc_or_none(y14[:, k], multi_prob[:, k]) for k in range(y14.shape[1])]
    names = LABELS if len(per_class) == len(LABELS) else tuple(str(k) for k in range(len(per_class)))
    binary_true = ybin > 0.5
    return {
        "macro_auc": macro_auc(per_class),
        "binary_auc": auc_or_none(ybin, binary_prob),
        "binary_f1": float(f1_score(binary_true, binary_prob >= threshold, zero_division=0.0)),
        "per_class_auc": dict(zip(names, per_class, strict=True)),
    }
