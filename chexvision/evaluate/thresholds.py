"""Operating points for the binary head, chosen on the validation split and applied unchanged to the test
split.

Two rules: Youden's J (max sensitivity + specificity - 1) and the highest threshold that still reaches a
target sensitivity (default 0.95, a screening operating point). Curves and counts come from scikit-learn.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_curve

__all__ = ["metrics_at_threshold", "sensitivity_threshold", "youden_threshold"]


def _roc(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true) > 0.5
    if y.all() or not y.any():
        raise ValueError("a threshold needs both positive and negative images")
    fpr, tpr, thr = roc_curve(y, np.asarray(y_score, dtype=np.float64), drop_intermediate=False)
    # roc_curve's first threshold is +inf (nothing predicted positive): never a usable operating point.
    return fpr[1:], tpr[1:], thr[1:]


def youden_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Threshold maximising Youden's J = TPR - FPR (the first, i.e. highest, on ties)."""
    fpr, tpr, thr = _roc(y_true, y_score)
    return float(thr[int(np.argmax(tpr - fpr))])


def sensitivity_threshold(y_true: np.ndarray, y_score: np.ndarray, target: float = 0.95) -> float:
    """Highest threshold whose sensitivity (TPR) is at least `target`."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    _, tpr, thr = _roc(y_true, y_score)
    return float(thr[int(np.argmax(tpr >= target - 1e-12))])


def metrics_at_threshold(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Sensitivity, specificity, precision, F1 and accuracy, predicting positive for score >= threshold."""
    y = (np.asarray(y_true) > 0.5).astype(int)
    pred = (np.asarray(y_score) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    return {
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn) if tp + fn else None,  # None (JSON null): no positive image
        "specificity": tn / (tn + fp) if tn + fp else None,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "accuracy": (tp + tn) / len(y),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
