"""Evaluation and interpretability: metrics with patient-bootstrap CIs, operating points, calibration, TTA,
ensembles, Grad-CAM and its localization score, reports, and head-to-head comparison of runs.

Nothing here imports torch at import time; the model-facing functions import it when called.
"""

from __future__ import annotations

from chexvision.evaluate.bootstrap import bootstrap_classification, paired_bootstrap
from chexvision.evaluate.calibration import expected_calibration_error, fit_temperature, reliability_curve
from chexvision.evaluate.metrics import auprc, auroc, classification_metrics, macro, per_class
from chexvision.evaluate.predictions import Predictions, ensemble, predictions_from_csv, score_predictions
from chexvision.evaluate.thresholds import metrics_at_threshold, sensitivity_threshold, youden_threshold

__all__ = [
    "Predictions",
    "auprc",
    "auroc",
    "bootstrap_classification",
    "classification_metrics",
    "ensemble",
    "expected_calibration_error",
    "fit_temperature",
    "macro",
    "metrics_at_threshold",
    "paired_bootstrap",
    "per_class",
    "predictions_from_csv",
    "reliability_curve",
    "score_predictions",
    "sensitivity_threshold",
    "youden_threshold",
]
