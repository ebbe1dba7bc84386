"""THE metrics table, and the functions that compute the evaluation's metrics for the 14-label and binary tasks.

`METRICS` lists every scalar metric the project reports: its key (the same key in a metrics.json split block, in
its "ci" block, and in `--json`), how it is displayed, its Hugging Face model-index type, whether it has a
patient-bootstrap CI, which metrics.json sections carry it and at which threshold it is measured. The report, the
model card, the CLI tables and `--json` iterate over it; nothing else lists metric keys.

Adding a metric: a `Metric` row here, plus the line of the function that computes it — `classification_metrics`
or `binary_head_metrics` below for an evaluation metric (split "test"; and `bootstrap_classification` when it has
a CI), `chexvision.engine.metrics.validation_metrics` for a metric training tracks (split "val"; the history
record and metrics.json "val" copy those keys by name in `engine/train.py` and `rundir.py`). Tests check that
every computed key is in the table and every table key is computed.

Per-class AUROC/AUPRC (`per_class_auc`, `per_class_auprc`: {label: value}) are tables of their own, not rows.
Undefined values follow `chexvision.engine.metrics`: a class without positives (or negatives) is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from chexvision.engine.metrics import auprc, auroc, macro
from chexvision.evaluate.thresholds import metrics_at_threshold
from chexvision.labels import LABELS

__all__ = [
    "METRICS",
    "TEST",
    "VAL",
    "Metric",
    "Threshold",
    "auprc",
    "auroc",
    "binary_head_metrics",
    "classification_metrics",
    "flat_metrics",
    "get_metric",
    "macro",
    "metrics_for",
    "per_class",
]

VAL = "val"  # metrics.json "val": training's best epoch (chexvision.engine.metrics.validation_metrics)
TEST = "test"  # metrics.json "test" (or "val_eval"): `chexvision evaluate` (score_predictions)


class Threshold(StrEnum):
    """Where a metric cuts the binary probability; the operating points are chosen on validation."""

    NONE = "none"  # threshold-free (AUROC, AUPRC, ECE)
    HALF = "0.5"  # fixed at 0.5
    YOUDEN = "youden"  # Youden's J (max sensitivity + specificity - 1) on validation
    TARGET_SENSITIVITY = "target_sensitivity"  # highest threshold reaching the target sensitivity on validation

    @property
    def label(self) -> str:
        """Short, for column headers: `binary F1 @ Youden`."""
        return {"none": "", "0.5": "0.5", "youden": "Youden", "target_sensitivity": "target sensitivity"}[self.value]

    @property
    def description(self) -> str:
        """Where the probability is cut, for a sentence or the model-index `args`."""
        return {
            "none": "no threshold",
            "0.5": "0.5",
            "youden": "the Youden threshold chosen on validation",
            "target_sensitivity": "the target-sensitivity threshold chosen on validation",
        }[self.value]


@dataclass(frozen=True)
class Metric:
    """One row of the metrics table."""

    key: str  # key in a metrics.json split block, in its "ci" block (when `ci`) and in `--json`
    label: str  # short name in tables; thresholded ones read "binary {label} @ {threshold}"
    name: str  # full name: the model card's model-index `name`
    splits: tuple[str, ...]  # the metrics.json sections that carry it: VAL (training), TEST (evaluation)
    model_index: tuple[str, str] | None = None  # (type, config) in the card's model-index; None: not on the card
    ci: bool = False  # a 95% patient-bootstrap interval at block["ci"][key] (evaluation only)
    threshold: Threshold = Threshold.NONE
    summary: bool = False  # a column of the CLI's summary table

    @property
    def column(self) -> str:
        """The column header: `macro AUROC`, `binary F1 @ Youden`."""
        return self.label if self.threshold is Threshold.NONE else f"binary {self.label} @ {self.threshold.label}"


_BOTH = (VAL, TEST)
_ANY = "(any finding vs No Finding)"

_T = Threshold
# The table, one row per metric (kept as rows, not reformatted).
# fmt: off
METRICS: tuple[Metric, ...] = (
    Metric("macro_auc", "macro AUROC", "Macro AUC (14 findings)", _BOTH, ("roc_auc", "macro"), ci=True, summary=True),
    Metric("macro_auprc", "macro AUPRC", "Macro AUPRC (14 findings)", (TEST,), ci=True),
    Metric("binary_auc", "binary AUROC", f"Binary AUC {_ANY}", _BOTH, ("roc_auc", "binary"), ci=True, summary=True),
    Metric("binary_auprc", "binary AUPRC", f"Binary AUPRC {_ANY}", (TEST,), ci=True),
    Metric("binary_f1", "F1", f"Binary F1 {_ANY}", _BOTH, ("f1", "binary"), threshold=_T.HALF, summary=True),
    Metric("binary_f1_youden", "F1", f"Binary F1 at the Youden threshold {_ANY}", (TEST,), ("f1", "binary_youden"),
           threshold=_T.YOUDEN, summary=True),
    Metric("binary_sensitivity_youden", "sensitivity", "Binary sensitivity at the Youden threshold", (TEST,),
           threshold=_T.YOUDEN),
    Metric("binary_specificity_youden", "specificity", "Binary specificity at the Youden threshold", (TEST,),
           threshold=_T.YOUDEN),
    Metric("binary_sensitivity_target", "sensitivity", "Binary sensitivity at the target-sensitivity threshold",
           (TEST,), threshold=_T.TARGET_SENSITIVITY),
    Metric("binary_specificity_target", "specificity", "Binary specificity at the target-sensitivity threshold",
           (TEST,), threshold=_T.TARGET_SENSITIVITY),
    Metric("ece_binary", "binary ECE", "Expected calibration error of the binary head", (TEST,), summary=True),
    Metric("ece_binary_scaled", "binary ECE, scaled", "Binary ECE after temperature scaling fitted on validation",
           (TEST,), summary=True),
)
# fmt: on


def metrics_for(split: str) -> tuple[Metric, ...]:
    """The table's rows a metrics.json section carries (`val`; `test` or `val_eval` for an evaluation)."""
    wanted = VAL if split == VAL else TEST
    return tuple(m for m in METRICS if wanted in m.splits)


def get_metric(key: str) -> Metric:
    for metric in METRICS:
        if metric.key == key:
            return metric
    raise KeyError(f"no metric {key!r} in the table (keys: {', '.join(m.key for m in METRICS)})")


def flat_metrics(block: Mapping[str, Any], split: str = TEST) -> dict[str, Any]:
    """Every table metric of `block` as `{key: value}`, plus `{key}_ci: [lo, hi] | None` for those with a CI."""
    ci = block.get("ci") or {}
    out: dict[str, Any] = {}
    for metric in metrics_for(split):
        out[metric.key] = block.get(metric.key)
        if metric.ci:
            out[f"{metric.key}_ci"] = ci.get(metric.key)
    return out


def per_class(
    y_true: np.ndarray, y_score: np.ndarray, metric: str = "auroc", labels: Sequence[str] = LABELS
) -> dict[str, float | None]:
    """Per-class AUROC or AUPRC of (N, K) arrays, keyed by label name."""
    fn = auroc if metric == "auroc" else auprc
    if metric not in ("auroc", "auprc"):
        raise ValueError(f"unknown metric {metric!r}; expected auroc or auprc")
    return {name: fn(y_true[:, k], y_score[:, k]) for k, name in enumerate(labels)}


def classification_metrics(
    y14: np.ndarray, p14: np.ndarray, ybin: np.ndarray, pbin: np.ndarray, defined: np.ndarray | None = None
) -> dict[str, object]:
    """Threshold-free metrics: per-class and macro AUROC/AUPRC, binary AUROC/AUPRC.

    `defined` [N, 14] (chexvision.data.classes; None: all): each class is scored on the images that define it; a
    class no image defines is None, out of the macro, and listed in `classes_not_defined` (never a negative)."""
    mask = np.ones(np.shape(y14), dtype=bool) if defined is None else np.asarray(defined, dtype=bool)
    auc = {name: auroc(y14[mask[:, k], k], p14[mask[:, k], k]) for k, name in enumerate(LABELS)}
    ap = {name: auprc(y14[mask[:, k], k], p14[mask[:, k], k]) for k, name in enumerate(LABELS)}
    some: np.ndarray = np.asarray(mask.any(axis=0))
    result: dict[str, object] = {
        "macro_auc": macro(auc),
        "per_class_auc": auc,
        "macro_auprc": macro(ap),
        "per_class_auprc": ap,
        "binary_auc": auroc(ybin, pbin),
        "binary_auprc": auprc(ybin, pbin),
        "n_images": len(y14),
        "positives": {name: int(np.count_nonzero(y14[mask[:, k], k] > 0.5)) for k, name in enumerate(LABELS)},
        "binary_positives": int(np.count_nonzero(np.asarray(ybin) > 0.5)),
        "classes_scored": [name for k, name in enumerate(LABELS) if some[k]],
        "classes_not_defined": [name for k, name in enumerate(LABELS) if not some[k]],
    }
    if defined is not None:
        result["images_per_class"] = {name: int(mask[:, k].sum()) for k, name in enumerate(LABELS)}
    return result


def binary_head_metrics(
    ybin: np.ndarray,
    pbin: np.ndarray,
    operating_points: Mapping[str, Mapping[str, Any]],
    calibration: Mapping[str, Any],
) -> dict[str, float | None]:
    """The binary head's thresholded and calibration metrics of the table.

    `operating_points`: {"youden": ..., "sensitivity_<target>": ...} as `metrics_at_threshold` rows (thresholds
    chosen on validation; empty when validation has one class). `calibration["binary"]`: ECE before/after scaling.
    """
    youden = operating_points.get("youden") or {}
    target = next((v for k, v in operating_points.items() if k.startswith("sensitivity_")), {})
    binary_cal = calibration.get("binary") or {}
    return {
        "binary_f1": metrics_at_threshold(ybin, pbin, 0.5)["f1"],
        "binary_f1_youden": youden.get("f1"),
        "binary_sensitivity_youden": youden.get("sensitivity"),
        "binary_specificity_youden": youden.get("specificity"),
        "binary_sensitivity_target": target.get("sensitivity"),
        "binary_specificity_target": target.get("specificity"),
        "ece_binary": binary_cal.get("ece_before"),
        "ece_binary_scaled": binary_cal.get("ece_after"),
    }
