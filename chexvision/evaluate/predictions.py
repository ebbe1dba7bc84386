"""Predictions of any model on a set of images, and their scoring.

`Predictions` is what inference returns and what a predictions CSV is read into, so a published model's output
is scored by exactly the same code (and on exactly the same images) as ours. `score_predictions` produces the
numbers of one evaluation: AUROC/AUPRC (+ patient-bootstrap CIs), binary operating points chosen on validation,
and calibration before/after temperature scaling fitted on validation; without validation predictions both are
2-fold cross-fitted by patient on the evaluated set (`fitted_on` says which). CSVs are written at full precision
(every float reads back bit for bit) and a CSV naming an image twice with different rows is refused.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexvision.data.classes import class_columns, read_class_columns
from chexvision.data.splits import patient_ids as _patient_ids
from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import Advance, bootstrap_classification
from chexvision.evaluate.calibration import MIN_BIN_COUNT, calibration_summary, per_class_calibration
from chexvision.evaluate.crossfit import CROSS_FITTED, crossfit_calibration, crossfit_operating_points, patient_folds
from chexvision.evaluate.metrics import binary_head_metrics, classification_metrics
from chexvision.evaluate.thresholds import metrics_at_threshold, sensitivity_threshold, youden_threshold
from chexvision.files import tmp_sibling
from chexvision.labels import LABELS, NO_FINDING, canonical_label, format_labels, label_matrix, parse_labels

__all__ = [
    "BINARY_HEAD",
    "BINARY_MAX",
    "Predictions",
    "StartStep",
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
BINARY_HEAD = "binary head"  # `binary_source` of a trained model's own abnormality head
BINARY_MAX = "max of the 14 finding probabilities"  # `binary_source` of a predictions file without a binary column
StartStep = Callable[[str, int], Advance]  # (description, total) -> advance: how a caller shows progress


@dataclass
class Predictions:
    """Per-image probabilities and ground truth, aligned by row.

    `binary_source` says where `pbin` comes from: `BINARY_HEAD`, `"column <name>"` of a predictions file, or
    `BINARY_MAX`. `warnings` are things the user should see once (e.g. exact duplicate rows that were merged)."""

    filenames: list[str]
    patient_ids: np.ndarray  # int64 [N]
    y14: np.ndarray  # float32 [N, 14]
    ybin: np.ndarray  # float32 [N]
    p14: np.ndarray  # float64 [N, 14]
    pbin: np.ndarray  # float64 [N]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    binary_source: str = BINARY_HEAD
    warnings: list[str] = field(default_factory=list)
    defined: np.ndarray | None = None  # bool [N, 14]: classes labelled per image (chexvision.data.classes); None: all

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
        self.to_frame().to_csv(tmp, index=False)  # repr floats: read back bit for bit (ties stay ties)
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
        binary_source=_mean_source([m.binary_source for m in members]),
        defined=first.defined,
    )


def _mean_source(sources: Sequence[str]) -> str:
    """`binary_source` of a mean: the members' one source, or says plainly that unlike scores were averaged."""
    distinct = list(dict.fromkeys(sources))
    return distinct[0] if len(distinct) == 1 else "mean of " + " and ".join(distinct)


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


def read_predictions_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray | None, str]:
    """(image names, probabilities [N, 14], binary probability [N] or None, its `binary_source`) from a CSV.

    Accepts NIH label names with or without a `prob_` prefix and with `_` or a space (`Pleural Thickening`).
    A binary column is `binary`/`abnormal`/`prob_abnormal`, or `No Finding` (then 1 - p is used).
    """
    frame = _read_csv(path, "predictions")
    if frame.empty:
        raise BadInputError(f"predictions file {path} has no rows", "write one row per image")
    image_col = _find_column(list(frame.columns), _IMAGE_COLUMNS)
    if image_col is None:
        raise BadInputError(
            f"predictions file {path} has no image-name column",
            f"name one column {' or '.join(repr(c) for c in _IMAGE_COLUMNS[:2])}",
        )
    columns = _label_columns(path, frame)
    p14 = _probabilities(path, frame, [columns[name] for name in LABELS])
    pbin, binary_source = None, BINARY_MAX
    if (bcol := _find_column(list(frame.columns), _BINARY_COLUMNS)) is not None:
        pbin, binary_source = _probabilities(path, frame, [bcol])[:, 0], f"column {bcol}"
    elif (ncol := _find_column(list(frame.columns), _NO_FINDING_COLUMNS)) is not None:
        pbin, binary_source = 1.0 - _probabilities(path, frame, [ncol])[:, 0], f"column {ncol} (1 - p)"
    return [_basename(n) for n in frame[image_col]], p14, pbin, binary_source


def _duplicates(path: Path, names: list[str], p14: np.ndarray, pbin: np.ndarray | None) -> list[str]:
    """Warnings for images listed more than once with identical probabilities; a BadInputError naming a few
    whose rows disagree (which one is right cannot be guessed)."""
    values = pd.DataFrame(p14 if pbin is None else np.column_stack([p14, pbin]))
    values.insert(0, "name", names)
    repeated = values[values["name"].duplicated(keep=False)]
    if repeated.empty:
        return []
    distinct = repeated.drop_duplicates()
    conflicting = list(dict.fromkeys(distinct.loc[distinct["name"].duplicated(), "name"]))
    if conflicting:
        shown = ", ".join(conflicting[:3]) + (f" and {len(conflicting) - 3} more" if len(conflicting) > 3 else "")
        raise BadInputError(
            f"predictions file {path} lists {len(conflicting)} image{'s' * (len(conflicting) > 1)} more than once "
            f"with different probabilities: {shown}",
            "keep one row per image",
        )
    n_names, example = repeated["name"].nunique(), str(repeated["name"].iloc[0])
    return [f"predictions file {path} repeats {n_names} images with identical rows (e.g. {example}); each is "
            "scored once"]  # fmt: skip


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
    """NIH metadata (`Image Index`, `Finding Labels`[, `Patient ID`]), ours (`filename`, `labels`), or, without a
    label column, one 1/0/blank column per class (blank: not labelled for that image; chexvision.data.classes).

    Returns a frame indexed by image base name with columns `labels` and `patient_id`, plus, for per-class columns,
    one column per NIH label holding 1.0, 0.0 or NaN (not defined).
    """
    frame = _read_csv(path, "labels")
    image_col = _find_column(list(frame.columns), _IMAGE_COLUMNS)
    label_col = _find_column(list(frame.columns), ("Finding Labels", "labels", "Finding_Labels", "label"))
    per_class = None
    if image_col is not None and label_col is None and class_columns(list(frame.columns)):  # item 10 hook
        y, defined = read_class_columns(frame, f"labels file {path}")
        per_class = np.where(defined, y, np.nan) if defined is not None else y.astype(np.float64)
        frame["labels"] = [format_labels(n for k, n in enumerate(LABELS) if row[k] > 0.5) for row in y]
        label_col = "labels"
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
    if per_class is not None:
        out[list(LABELS)] = per_class
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
    names, p14, pbin, binary_source = read_predictions_csv(pred_csv)
    warnings = _duplicates(pred_csv, names, p14, pbin)
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
    if unlabelled and len(unlabelled) == len(wanted):
        raise BadInputError(
            f"none of the {len(wanted)} predicted images of {pred_csv} is in the labels file {labels_csv} "
            f"(e.g. {wanted[0]})",
            "pass the labels of the predicted images (NIH Data_Entry_2017_v2020.csv)",
        )
    if unlabelled:
        raise BadInputError(
            f"{len(unlabelled)} predicted images are not in the labels file (e.g. {unlabelled[0]})",
            "pass the metadata CSV that covers them (NIH Data_Entry_2017_v2020.csv)",
        )
    rows = np.array([pos[n] for n in wanted], dtype=np.int64)
    sub = truth.loc[wanted]
    y14 = label_matrix(list(sub["labels"]))
    defined = None
    if set(LABELS) <= set(sub.columns):  # per-class 1/0/blank labels: NaN = not defined for that image
        cells = sub[list(LABELS)].to_numpy(dtype=np.float64)
        defined = None if np.isfinite(cells).all() else np.isfinite(cells)
    notes = []
    if pbin is None:
        notes.append("no binary column: the abnormality score is the maximum of the 14 probabilities, not a trained "
                     "binary head")  # fmt: skip
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
        binary_source=binary_source,
        warnings=warnings,
        defined=defined,
    )


def _thresholds(ref: Predictions, target: float) -> dict[str, float]:
    return {
        "youden": youden_threshold(ref.ybin, ref.pbin),
        f"sensitivity_{target:g}": sensitivity_threshold(ref.ybin, ref.pbin, target),
    }


def _operating_points(ref: Predictions, test: Predictions, target: float) -> dict[str, Any]:
    if ref.ybin.min() == ref.ybin.max():
        return {}
    return {name: metrics_at_threshold(test.ybin, test.pbin, thr) for name, thr in _thresholds(ref, target).items()}


def _labelled(pred: Predictions) -> np.ndarray:
    """[N, 14] bool: the labels each image has (all of them unless the data set leaves some undefined)."""
    return np.ones(pred.y14.shape, dtype=bool) if pred.defined is None else np.asarray(pred.defined, dtype=bool)


def _calibration(ref: Predictions, test: Predictions, n_bins: int) -> dict[str, Any]:
    """Temperature per head (binary; 14 labels pooled) and, per class, ECE/Brier/slope/intercept with the ECE after
    that temperature and after per-class Platt scaling, all fitted on `ref` and measured on `test`."""
    ref_on, test_on = _labelled(ref), _labelled(test)  # blank (undefined) labels are no negatives
    multi = calibration_summary(ref.p14[ref_on], ref.y14[ref_on], test.p14[test_on], test.y14[test_on], n_bins)
    per_class = per_class_calibration(
        ref.y14, ref.p14, test.y14, test.p14, multi["temperature"], n_bins,
        defined_ref=ref.defined, defined_test=test.defined,
    )  # fmt: skip
    multi["ece_platt"] = per_class.pop("pooled_ece_platt")
    return {
        "n_bins": n_bins,
        "min_bin_count": MIN_BIN_COUNT,
        "multi": multi,
        "binary": calibration_summary(ref.pbin, ref.ybin, test.pbin, test.ybin, n_bins),
        "per_class": per_class,
    }


def score_predictions(
    test: Predictions,
    val: Predictions | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    target_sensitivity: float = 0.95,
    n_bins: int = 15,
    evaluated: str = "test",
    progress: StartStep | None = None,
) -> dict[str, Any]:
    """All numbers of one evaluation. Thresholds and the temperature are fitted on `val`; without one (or when `val`
    is `test` itself) they are 2-fold cross-fitted by patient on `test` (`chexvision.evaluate.crossfit`), and
    `fitted_on` says which: "validation" or "<evaluated>, 2-fold cross-fitted by patient"."""
    if len(test) == 0:
        raise BadInputError("no images to evaluate", "check --data/--split or the predictions file")
    result: dict[str, Any] = classification_metrics(test.y14, test.p14, test.ybin, test.pbin, test.defined)
    result["n_patients"] = len(np.unique(test.patient_ids))
    result["binary_source"] = test.binary_source
    if bootstrap > 0:
        advance = progress(f"bootstrap ({bootstrap} patient resamples)", bootstrap) if progress else None
        result["ci"] = bootstrap_classification(
            test.y14, test.p14, test.ybin, test.pbin, test.patient_ids, n=bootstrap, seed=seed, advance=advance,
            defined=test.defined,
        )  # fmt: skip
    if val is not None and len(val) and val is not test:
        result["fitted_on"] = "validation"
        result["operating_points"] = _operating_points(val, test, target_sensitivity)
        result["calibration"] = _calibration(val, test, n_bins)
    else:
        result["fitted_on"] = f"{evaluated}, {CROSS_FITTED}"
        folds = patient_folds(test.patient_ids, seed)
        result["operating_points"] = crossfit_operating_points(
            test, folds, lambda ref: _thresholds(ref, target_sensitivity)
        )
        # a set of one patient cannot be split: its calibration is then fitted on itself, and says so
        cal = crossfit_calibration(test, folds, lambda ref, measured: _calibration(ref, measured, n_bins))
        if cal is None:
            result["fitted_on"] = f"{evaluated} itself (one patient: too few to cross-fit)"
            cal = _calibration(test, test, n_bins)
        result["calibration"] = cal
    for name in result["classes_not_defined"]:  # a class the data set does not label has no calibration either
        ((result["calibration"].get("per_class") or {}).get("classes") or {}).pop(name, None)
    result.update(binary_head_metrics(test.ybin, test.pbin, result["operating_points"], result["calibration"]))
    if test.notes:
        result["notes"] = list(test.notes)
    return result
