"""Predictions of any model on a set of images, and their scoring.

`Predictions` is what inference returns and what a predictions CSV is read into, so a published model's output
is scored by exactly the same code (and on exactly the same images) as ours. `score_predictions` produces the
numbers of one evaluation: AUROC/AUPRC (+ patient-bootstrap CIs), binary operating points chosen on validation,
and calibration before/after temperature scaling fitted on validation.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from chexvision.data.splits import patient_ids as _patient_ids
from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import bootstrap_classification
from chexvision.evaluate.calibration import expected_calibration_error, fit_temperature, logit, reliability_curve
from chexvision.evaluate.metrics import binary_head_metrics, classification_metrics
from chexvision.evaluate.thresholds import metrics_at_threshold, sensitivity_threshold, youden_threshold
from chexvision.files import tmp_sibling
from chexvision.labels import LABELS, NO_FINDING, canonical_label, format_labels, label_matrix, parse_labels

__all__ = [
    "Predictions",
    "ensemble",
    "predictions_from_csv",
    "read_image_list",
    "read_labels_csv",
    "read_predictions_csv",
    "score_predictions",
]

_IMAGE_COLUMNS = ("Image Index", "filename", "image", "Image", "image_name", "Image_Index", "path", "file")
_BINARY_COLUMNS = ("binary", "abnormal", "prob_abnormal", "prob_binary", "Abnormal")
_NO_FINDING_COLUMNS = ("No Finding", "No_Finding", "prob_No Finding", "prob_No_Finding")


@dataclass
class Predictions:
    """Per-image probabilities and ground truth, aligned by row. `binary_from_max`: no binary column was given."""

    filenames: list[str]
    patient_ids: np.ndarray  # int64 [N]
    y14: np.ndarray  # float32 [N, 14]
    ybin: np.ndarray  # float32 [N]
    p14: np.ndarray  # float64 [N, 14]
    pbin: np.ndarray  # float64 [N]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.filenames)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"filename": self.filenames, "patient_id": self.patient_ids})
        frame["labels"] = [format_labels(name for k, name in enumerate(LABELS) if row[k] > 0.5) for row in self.y14]
        for k, name in enumerate(LABELS):
            frame[f"prob_{name}"] = self.p14[:, k]
        frame["prob_abnormal"] = self.pbin
        return frame

    def write_csv(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_sibling(path)
        self.to_frame().to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(path)
        return path


def ensemble(members: Sequence[Predictions]) -> Predictions:
    """Mean probability of several models' predictions on the same images (same order)."""
    first = members[0]
    for other in members[1:]:
        if other.filenames != first.filenames:
            raise BadInputError(
                "ensemble members were evaluated on different images",
                "evaluate all runs on the same --data and --split (same split scheme and seed)",
            )
    return Predictions(
        filenames=list(first.filenames),
        patient_ids=first.patient_ids,
        y14=first.y14,
        ybin=first.ybin,
        p14=np.mean([m.p14 for m in members], axis=0),
        pbin=np.mean([m.pbin for m in members], axis=0),
        source="ensemble(" + ", ".join(m.source for m in members) + ")",
    )


def _basename(name: object) -> str:
    return str(name).replace("\\", "/").rsplit("/", 1)[-1]


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    return None


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise BadInputError(f"{what} file {path} not found", "check the path")
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadInputError(f"cannot read {what} file {path}: {exc}", "expected a CSV file") from exc


def read_predictions_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(image names, probabilities [N, 14], binary probability [N] or None) from a predictions CSV.

    Accepts NIH label names with or without a `prob_` prefix and with `_` or a space (`Pleural Thickening`).
    A binary column is `binary`/`abnormal`/`prob_abnormal`, or `No Finding` (then 1 - p is used).
    """
    frame = _read_csv(path, "predictions")
    image_col = _find_column(list(frame.columns), _IMAGE_COLUMNS)
    if image_col is None:
        raise BadInputError(
            f"predictions file {path} has no image-name column",
            f"name one column {' or '.join(repr(c) for c in _IMAGE_COLUMNS[:2])}",
        )
    columns = _label_columns(path, frame)
    p14 = _probabilities(path, frame, [columns[name] for name in LABELS])
    pbin = None
    if (bcol := _find_column(list(frame.columns), _BINARY_COLUMNS)) is not None:
        pbin = _probabilities(path, frame, [bcol])[:, 0]
    elif (ncol := _find_column(list(frame.columns), _NO_FINDING_COLUMNS)) is not None:
        pbin = 1.0 - _probabilities(path, frame, [ncol])[:, 0]
    return [_basename(n) for n in frame[image_col]], p14, pbin


def _label_columns(path: Path, frame: pd.DataFrame) -> dict[str, str]:
    """Canonical label -> its column; every label needs exactly one (`Effusion` and `prob_Effusion` is ambiguous)."""
    columns: dict[str, str] = {}
    for col in map(str, frame.columns):
        try:
            label = canonical_label(col)
        except ValueError:
            continue  # the image column, a binary column, metadata
        if label in columns:
            raise BadInputError(
                f"predictions file {path} has two columns for {label}: {columns[label]!r} and {col!r}",
                "keep one probability column per pathology",
            )
        columns[label] = col
    missing = [name for name in LABELS if name not in columns]
    if missing:
        raise BadInputError(
            f"predictions file {path} lacks probability columns for {', '.join(missing)}",
            "give one column per NIH pathology, e.g. `Effusion` or `prob_Effusion`",
        )
    return columns


def _probabilities(path: Path, frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as float64 [N, K]; text, blanks or values outside [0, 1] are a BadInputError naming the column."""
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for k, col in enumerate(columns):
        try:
            values[:, k] = frame[col].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise BadInputError(f"column {col!r} of {path} holds text", "write one probability per cell") from None
        bad = ~np.isfinite(values[:, k]) | (values[:, k] < 0) | (values[:, k] > 1)
        if bad.any():
            raise BadInputError(
                f"column {col!r} of {path} has {int(bad.sum())} blank values or values outside [0, 1]",
                "give a probability for every image (apply a sigmoid to logits)",
            )
    return values


def read_labels_csv(path: Path) -> pd.DataFrame:
    """NIH metadata (`Image Index`, `Finding Labels`[, `Patient ID`]) or ours (`filename`, `labels`).

    Returns a frame indexed by image base name with columns `labels` and `patient_id`.
    """
    frame = _read_csv(path, "labels")
    image_col = _find_column(list(frame.columns), _IMAGE_COLUMNS)
    label_col = _find_column(list(frame.columns), ("Finding Labels", "labels", "Finding_Labels", "label"))
    if image_col is None or label_col is None:
        raise BadInputError(
            f"labels file {path} needs an image column and a label column",
            "use the NIH Data_Entry_2017 CSV (`Image Index`, `Finding Labels`) or `filename`,`labels`",
        )
    texts = frame[label_col].fillna(NO_FINDING).astype(str).to_numpy()
    _, first = np.unique(texts, return_index=True)
    for row in np.sort(first):  # each distinct label string once (NIH: ~800 for 112k images)
        try:
            parse_labels(texts[row])
        except ValueError as exc:
            raise BadInputError(
                f"labels file {path}, line {row + 2}: {exc}",  # +2: the header, and 1-based lines
                "label names are the 14 NIH pathologies joined by `|`, or `No Finding`",
            ) from None
    names = [_basename(n) for n in frame[image_col]]
    pid_col = _find_column(list(frame.columns), ("Patient ID", "patient_id"))
    try:
        pids = frame[pid_col].astype(np.int64).to_numpy() if pid_col else _patient_ids(names)
    except (TypeError, ValueError) as exc:
        hint = "use whole numbers in `Patient ID`"
        raise BadInputError(f"labels file {path} has bad patient ids: {exc}", hint) from None
    out = pd.DataFrame({"labels": texts, "patient_id": pids})
    out.index = pd.Index(names, name="filename")
    return out[~out.index.duplicated()]


def read_image_list(path: Path) -> list[str]:
    """Image names, one per line (plain or .gz); blank lines and `#` comments skipped."""
    opener: Any = gzip.open if str(path).endswith(".gz") else open
    if not Path(path).is_file():
        raise BadInputError(f"image list {path} not found", "one image name per line")
    with opener(path, "rt") as fh:
        return [_basename(line.strip()) for line in fh if line.strip() and not line.startswith("#")]


def predictions_from_csv(pred_csv: Path, labels_csv: Path, images: Sequence[str] | None = None) -> Predictions:
    """Join a predictions CSV with ground truth; restrict to `images` when given (all must be predicted)."""
    names, p14, pbin = read_predictions_csv(pred_csv)
    truth = read_labels_csv(labels_csv)
    pos = {n: i for i, n in enumerate(names)}
    wanted = list(dict.fromkeys(images)) if images is not None else list(dict.fromkeys(names))
    unpredicted = [n for n in wanted if n not in pos]
    if images is not None and unpredicted:
        raise BadInputError(
            f"{len(unpredicted)} listed images have no prediction (e.g. {unpredicted[0]})",
            "predict every listed image, or drop --images",
        )
    unlabelled = [n for n in wanted if n not in truth.index]
    if unlabelled:
        raise BadInputError(
            f"{len(unlabelled)} predicted images are not in the labels file (e.g. {unlabelled[0]})",
            "pass the metadata CSV that covers them (NIH Data_Entry_2017_v2020.csv)",
        )
    rows = np.array([pos[n] for n in wanted], dtype=np.int64)
    sub = truth.loc[wanted]
    y14 = label_matrix(list(sub["labels"]))
    notes = []
    if pbin is None:
        notes.append("no binary column: the abnormality score is the maximum of the 14 probabilities")
        binary = p14[rows].max(axis=1)
    else:
        binary = pbin[rows]
    return Predictions(
        filenames=wanted,
        patient_ids=sub["patient_id"].to_numpy(dtype=np.int64),
        y14=y14,
        ybin=(y14.sum(axis=1) > 0).astype(np.float32),
        p14=p14[rows],
        pbin=binary,
        source=str(pred_csv),
        notes=notes,
    )


def _operating_points(ref: Predictions, test: Predictions, target: float) -> dict[str, Any]:
    if ref.ybin.min() == ref.ybin.max():
        return {}
    chosen = {
        "youden": youden_threshold(ref.ybin, ref.pbin),
        f"sensitivity_{target:g}": sensitivity_threshold(ref.ybin, ref.pbin, target),
    }
    return {name: metrics_at_threshold(test.ybin, test.pbin, thr) for name, thr in chosen.items()}


def _calibration(ref: Predictions, test: Predictions, n_bins: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_bins": n_bins}
    pairs = {"multi": (ref.p14, ref.y14, test.p14, test.y14), "binary": (ref.pbin, ref.ybin, test.pbin, test.ybin)}
    for head, (p_ref, y_ref, p_test, y_test) in pairs.items():
        t = fit_temperature(logit(p_ref), y_ref)
        scaled = expit(logit(p_test) / t)  # overflow-free sigmoid
        out[head] = {
            "temperature": t,
            "ece_before": expected_calibration_error(y_test, p_test, n_bins),
            "ece_after": expected_calibration_error(y_test, scaled, n_bins),
            "curve_before": reliability_curve(y_test, p_test, n_bins),
            "curve_after": reliability_curve(y_test, scaled, n_bins),
        }
    return out


def score_predictions(
    test: Predictions,
    val: Predictions | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    target_sensitivity: float = 0.95,
    n_bins: int = 15,
) -> dict[str, Any]:
    """All numbers of one evaluation. Thresholds and the temperature are fitted on `val` (else on `test`
    itself, which is optimistic and recorded as `fitted_on: "evaluated set"`)."""
    if len(test) == 0:
        raise BadInputError("no images to evaluate", "check --data/--split or the predictions file")
    ref = val if val is not None and len(val) else test
    result: dict[str, Any] = classification_metrics(test.y14, test.p14, test.ybin, test.pbin)
    result["n_patients"] = len(np.unique(test.patient_ids))
    result["fitted_on"] = "validation" if ref is not test else "evaluated set"
    if bootstrap > 0:
        result["ci"] = bootstrap_classification(
            test.y14, test.p14, test.ybin, test.pbin, test.patient_ids, n=bootstrap, seed=seed
        )
    result["operating_points"] = _operating_points(ref, test, target_sensitivity)
    result["calibration"] = _calibration(ref, test, n_bins)
    result.update(binary_head_metrics(test.ybin, test.pbin, result["operating_points"], result["calibration"]))
    if test.notes:
        result["notes"] = list(test.notes)
    return result
