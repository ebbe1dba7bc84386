"""Validation metrics the trainer tracks: per-class ROC AUC, macro AUC over defined classes, binary AUC and F1.

A class whose validation labels are all one value (no positives, or no negatives) has no ROC curve: its AUC is
None (JSON null), never 0.5, and it is left out of the macro average (the rules of `chexvision.evaluate.metrics`,
which training and evaluation share).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from chexvision.evaluate.metrics import auroc, macro
from chexvision.labels import LABELS

__all__ = ["validation_metrics"]


def validation_metrics(
    multi_prob: np.ndarray, binary_prob: np.ndarray, y14: np.ndarray, ybin: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics over one split: {"macro_auc", "binary_auc", "binary_f1", "per_class_auc": {label: auc|None}}."""
    per_class = [auroc(y14[:, k], multi_prob[:, k]) for k in range(y14.shape[1])]
    names = LABELS if len(per_class) == len(LABELS) else tuple(str(k) for k in range(len(per_class)))
    binary_true = ybin > 0.5
    return {
        "macro_auc": macro(per_class),
        "binary_auc": auroc(ybin, binary_prob),
        "binary_f1": float(f1_score(binary_true, binary_prob >= threshold, zero_division=0.0)),
        "per_class_auc": dict(zip(names, per_class, strict=True)),
    }
