"""Performance by patient subgroup and underdiagnosis (Seyyed-Kalantari et al., Nature Medicine 2021).

Subgroups: sex (`M`, `F`), age band (`0-19`, `20-39`, `40-59`, `60-79`, `80+`; an age outside 0-120 is a data
error and counts as unknown) and view (`PA`, `AP`; lateral and other views are unknown). Per subgroup: macro and
per-class AUROC, and the *underdiagnosis rate*, the share of abnormal images (any of the 14 findings) that the
binary decision calls normal (the paper's false-positive rate of "No Finding"). The decision is the binary score
at the Youden threshold of the evaluation's own operating points, fitted where they were fitted (`fitted_on`):
one threshold fitted on validation, or, when cross-fitted, each image decided by the threshold fitted on the other
half of the patients (`chexvision.evaluate.crossfit`), so the subgroup rates add up to the overall miss rate
(1 - sensitivity at Youden).

CIs are patient-bootstrap percentile intervals within each subgroup: its patients are resampled (with all of their
images in that subgroup; `bootstrap_classification` for the AUROCs, and the same draws, `bootstrap_weights` with the
same seed, for the rate). Per attribute, `largest_gap` names the subgroups with the highest and lowest rate, their
difference, and whether their intervals overlap (non-overlapping 95 % intervals are a conservative sign of a real
gap; overlapping ones do not show there is none).

Where the attributes come from: our shards' optional `age`/`sex`/`view` columns, a `--labels` CSV's columns (NIH
`Patient Age`, `Patient Gender`, `View Position`, or ours), else the shipped NIH metadata joined by image name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from chexvision.engine.metrics import auroc, macro
from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import Advance, bootstrap_classification, bootstrap_weights, percentile_interval
from chexvision.evaluate.crossfit import patient_folds, subset
from chexvision.evaluate.metrics import per_class

if TYPE_CHECKING:
    from chexvision.data.shards import ShardIndex
    from chexvision.evaluate.predictions import Predictions, StartStep

__all__ = [
    "AGE_BANDS",
    "ATTRIBUTES",
    "MIN_GAP_ABNORMAL",
    "SHIPPED",
    "SUBGROUPS",
    "AttributeTable",
    "SubgroupRequest",
    "add_subgroups",
    "age_band",
    "attribute_table",
    "csv_subgroup_table",
    "parse_subgroups",
    "score_subgroups",
    "table_from_index",
    "table_from_labels_csv",
    "youden_calls",
]

AGE_BANDS = ("0-19", "20-39", "40-59", "60-79", "80+")
SUBGROUPS: dict[str, tuple[str, ...]] = {"sex": ("M", "F"), "age": AGE_BANDS, "view": ("PA", "AP")}
ATTRIBUTES = tuple(SUBGROUPS)
SHIPPED = "the shipped NIH metadata (Data_Entry_2017_v2020)"
# a subgroup enters `largest_gap` with at least this many abnormal images: below it, a rate (and its bootstrap
# interval, zero-wide for one patient) says little, and the largest gap would be the smallest subgroup's noise
MIN_GAP_ABNORMAL = 10
_SHIPPED_COVERAGE = 0.5  # the NIH metadata is used when it names at least this share of the images
_MAX_AGE = 120  # NIH's 2017 release had ages of 148-414 years: typing errors, not patients
# column spellings, case-insensitive: NIH Data_Entry, ours (shards, `data build`)
_COLUMNS = {
    "age": ("Patient Age", "age"),
    "sex": ("Patient Gender", "sex", "gender"),
    "view": ("View Position", "view"),
}
_IMAGE_COLUMNS = ("Image Index", "filename", "image", "Image", "image_name", "path", "file")


@dataclass(frozen=True)
class SubgroupRequest:
    """Which attributes `--subgroups` asked for; `explicit` ones must be found in the metadata."""

    attributes: tuple[str, ...]
    explicit: bool


def parse_subgroups(text: str | None) -> SubgroupRequest:
    """`auto` (or empty: every attribute the metadata has), `none`, or a comma-separated list of attributes."""
    value = (text or "auto").strip().lower()
    if value == "auto":
        return SubgroupRequest(ATTRIBUTES, explicit=False)
    if value == "none":
        return SubgroupRequest((), explicit=True)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUBGROUPS]
    if unknown or not names:
        shown = ", ".join(repr(n) for n in unknown) or repr(text)
        raise BadInputError(
            f"unknown subgroup attribute {shown}",
            f"use --subgroups with any of {', '.join(ATTRIBUTES)} (comma-separated), auto or none",
        )
    return SubgroupRequest(tuple(dict.fromkeys(names)), explicit=True)


def age_band(age: object) -> str | None:
    """The age band of an age in years (`0-19` ... `80+`; `"058Y"`, and `"011M"` or `"020D"` for infants, as NIH's
    first release wrote them); None when missing or outside 0-120."""
    if isinstance(age, str) and (m := re.fullmatch(r"\s*(\d+)\s*([YyMmDd]?)\s*", age)):
        age = int(m.group(1)) if m.group(2) in ("", "Y", "y") else 0
    try:
        years = float(age)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not np.isfinite(years) or years < 0 or years > _MAX_AGE:
        return None
    return AGE_BANDS[min(int(years) // 20, len(AGE_BANDS) - 1)]


def _sex(value: object) -> str | None:
    text = "" if value is None or value is pd.NA else str(value).strip().upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(text)


def _view(value: object) -> str | None:
    text = "" if value is None or value is pd.NA else str(value).strip().upper()
    return text if text in ("PA", "AP") else None


_NORMALISE = {"age": age_band, "sex": _sex, "view": _view}


@dataclass(frozen=True)
class AttributeTable:
    """Subgroup of each image (by base name) per found attribute, and where each attribute came from."""

    groups: pd.DataFrame  # index: image base name; one object column per attribute (subgroup name or None)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def lookup(self, filenames: Sequence[str]) -> dict[str, np.ndarray]:
        """Per attribute, the subgroup of each image (None where unknown or not in the table)."""
        names = [_basename(n) for n in filenames]
        frame = self.groups.reindex(names)
        return {a: frame[a].astype(object).where(frame[a].notna(), None).to_numpy() for a in self.attributes}


def _basename(name: object) -> str:
    return str(name).replace("\\", "/").rsplit("/", 1)[-1]


def _column(frame: pd.DataFrame, attribute: str) -> str | None:
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    return next((lowered[s.lower()] for s in _COLUMNS[attribute] if s.lower() in lowered), None)


def attribute_table(request: SubgroupRequest, frame: pd.DataFrame, source: str) -> AttributeTable:
    """Subgroups of the images of `frame` (indexed by base name) for the requested attributes: from `frame`'s own
    column when it has values, else from the shipped NIH metadata when that names at least half of the images. An
    explicitly requested attribute found nowhere is a BadInputError naming it; a default one is left out."""
    index = pd.Index([_basename(n) for n in frame.index])
    groups = pd.DataFrame(index=index[~index.duplicated()])
    sources: dict[str, str] = {}
    shipped: pd.DataFrame | None = None
    for attribute in request.attributes:
        values = _normalised(frame, attribute, groups.index)
        where = source
        if values is None:
            shipped = _shipped() if shipped is None else shipped
            # names that merely collide with a few NIH names (another data set's `00000001_005.png`) are not NIH
            if groups.index.isin(shipped.index).mean() >= _SHIPPED_COVERAGE:
                values, where = _normalised(shipped, attribute, groups.index), SHIPPED
        if values is None:
            if request.explicit:
                raise BadInputError(
                    f"no {attribute} for the evaluated images: neither {source} nor {SHIPPED} gives one",
                    f"drop {attribute} from --subgroups, or add a `{attribute}` column",
                )
            continue
        groups[attribute] = values
        sources[attribute] = where
    return AttributeTable(groups, sources)


def _normalised(frame: pd.DataFrame | None, attribute: str, names: pd.Index) -> np.ndarray | None:
    """The attribute's subgroup for each of `names`, or None when `frame` has no value for any of them."""
    col = None if frame is None else _column(frame, attribute)
    if frame is None or col is None:
        return None
    raw = frame[col][~frame.index.duplicated()].reindex(names)
    values = np.array([_NORMALISE[attribute](v) for v in raw.astype(object)], dtype=object)
    return values if any(v is not None for v in values) else None


def _shipped() -> pd.DataFrame:
    from chexvision.data.metadata import load_metadata

    meta = load_metadata()
    return meta.set_index(meta["filename"].map(_basename))


def table_from_index(index: ShardIndex, request: SubgroupRequest, data_dir: Path) -> AttributeTable:
    """The attributes of a shard folder's images: the shards' `age`/`sex`/`view` columns, else the NIH metadata."""
    frame = pd.DataFrame({k: v for k, v in index.extra.items() if k in SUBGROUPS})
    frame.index = pd.Index([_basename(n) for n in index.filenames])
    return attribute_table(request, frame, f"the shards of {data_dir}")


def table_from_labels_csv(path: Path, request: SubgroupRequest) -> AttributeTable:
    """The attributes of a `--labels` CSV's images: its own columns, else the NIH metadata."""
    frame = pd.read_csv(path)
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    image_col = next((lowered[c.lower()] for c in _IMAGE_COLUMNS if c.lower() in lowered), None)
    if image_col is None:  # read_labels_csv has already refused such a file
        raise BadInputError(f"labels file {path} has no image column", "name one column 'Image Index'")
    frame.index = pd.Index([_basename(n) for n in frame[image_col]])
    return attribute_table(request, frame, f"the labels file {path}")


def youden_calls(test: Predictions, score: Mapping[str, Any], seed: int) -> np.ndarray | None:
    """Whether the binary decision at the Youden operating point calls each image abnormal; None without one.

    Cross-fitted operating points (`fold_thresholds`) decide each image by the threshold fitted on the other half,
    with the folds `score_predictions` drew (`patient_folds` with the same seed); the count of missed abnormal
    images is checked against the operating point's own `fn`."""
    op = (score.get("operating_points") or {}).get("youden")
    if not op:
        return None
    if "fold_thresholds" in op:
        thresholds = np.asarray(op["fold_thresholds"], dtype=np.float64)[patient_folds(test.patient_ids, seed)]
    else:
        thresholds = np.full(len(test), float(op["threshold"]))
    called = np.asarray(test.pbin) >= thresholds
    missed = int(np.count_nonzero((test.ybin > 0.5) & ~called))
    if "fn" in op and missed != int(op["fn"]):
        raise RuntimeError(f"Youden decisions miss {missed} abnormal images, the operating point {op['fn']}")
    return called


def _rate_interval(
    patient_ids: np.ndarray, abnormal: np.ndarray, missed: np.ndarray, n: int, seed: int
) -> tuple[list[float] | None, int]:
    """Patient-bootstrap interval of missed / abnormal, and how many replicates drew no abnormal image."""
    _, patient = np.unique(patient_ids, return_inverse=True)  # patient k = k-th sorted id, as the AUROC bootstrap
    n_patients = int(patient.max()) + 1
    per_abnormal = np.bincount(patient, weights=abnormal.astype(np.float64), minlength=n_patients)
    per_missed = np.bincount(patient, weights=missed.astype(np.float64), minlength=n_patients)
    rates = []
    for weights in bootstrap_weights(n_patients, n, seed):
        a, m = weights @ per_abnormal, weights @ per_missed
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append(np.where(a > 0, m / a, np.nan))
    values = np.concatenate(rates)
    interval = percentile_interval(values)
    return (None if interval is None else [interval[0], interval[1]]), int(np.isnan(values).sum())


def _subgroup(
    test: Predictions, mask: np.ndarray, called: np.ndarray | None, bootstrap: int, seed: int, advance: Advance | None
) -> dict[str, Any]:
    sub = subset(test, mask)
    auc = per_class(sub.y14, sub.p14, "auroc")
    abnormal = sub.ybin > 0.5
    missed = abnormal & ~called[mask] if called is not None else np.zeros(len(sub), dtype=bool)
    n_abnormal = int(abnormal.sum())
    entry: dict[str, Any] = {
        "images": len(sub),
        "patients": len(np.unique(sub.patient_ids)),
        "abnormal": n_abnormal,
        "missed": int(missed.sum()) if called is not None else None,
        "macro_auc": macro(auc),
        "macro_auc_ci": None,
        "binary_auc": auroc(sub.ybin, sub.pbin) if len(sub) else None,
        "underdiagnosis_rate": int(missed.sum()) / n_abnormal if called is not None and n_abnormal else None,
        "underdiagnosis_ci": None,
        "per_class_auc": auc,
        "per_class_auc_ci": {name: None for name in auc},
    }
    if bootstrap > 0 and len(sub):
        ci = bootstrap_classification(
            sub.y14, sub.p14, sub.ybin, sub.pbin, sub.patient_ids, n=bootstrap, seed=seed, advance=advance
        )
        entry["macro_auc_ci"], entry["per_class_auc_ci"] = ci["macro_auc"], ci["per_class_auc"]
        entry["binary_auc_ci"] = ci["binary_auc"]
        if called is not None and n_abnormal:
            entry["underdiagnosis_ci"], entry["underdiagnosis_degenerate"] = _rate_interval(
                sub.patient_ids, abnormal, missed, bootstrap, seed
            )
    elif advance is not None and bootstrap > 0:
        advance(bootstrap)  # an empty subgroup: nothing to resample
    return entry


def _overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    return None if a is None or b is None else bool(a[0] <= b[1] and b[0] <= a[1])


def _largest_gap(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The subgroups of highest and lowest underdiagnosis rate (first in canonical order on ties) among those with
    at least `MIN_GAP_ABNORMAL` abnormal images; None with fewer than two such subgroups."""
    rated = {name: g for name, g in groups.items() if g["underdiagnosis_rate"] is not None}
    rated = {name: g for name, g in rated.items() if g["abnormal"] >= MIN_GAP_ABNORMAL}
    if len(rated) < 2:
        return None
    high = max(rated, key=lambda k: rated[k]["underdiagnosis_rate"])
    low = min(rated, key=lambda k: rated[k]["underdiagnosis_rate"])
    h, lo = rated[high], rated[low]
    return {
        "highest": high,
        "lowest": low,
        "highest_rate": h["underdiagnosis_rate"],
        "lowest_rate": lo["underdiagnosis_rate"],
        "difference": h["underdiagnosis_rate"] - lo["underdiagnosis_rate"],
        "highest_ci": h["underdiagnosis_ci"],
        "lowest_ci": lo["underdiagnosis_ci"],
        "ci_overlap": _overlap(h["underdiagnosis_ci"], lo["underdiagnosis_ci"]),
        "highest_abnormal": h["abnormal"],
        "lowest_abnormal": lo["abnormal"],
    }


def score_subgroups(
    test: Predictions,
    table: AttributeTable,
    score: Mapping[str, Any],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    advance: Advance | None = None,
) -> dict[str, Any]:
    """`{attribute: {subgroup: {...}}, "largest_gap": {attribute: {...} | None}, "decision": ..., ...}` (module
    docstring); `seed` must be the one `score` was computed with (its cross-fitting folds)."""
    groups = table.lookup(test.filenames)
    called = youden_calls(test, score, seed)
    op = (score.get("operating_points") or {}).get("youden") or {}
    abnormal = test.ybin > 0.5
    out: dict[str, Any] = {
        "attributes": list(table.attributes),
        "sources": dict(table.sources),
        "unknown": {a: int(sum(v is None for v in groups[a])) for a in table.attributes},
        "decision": {
            "rule": "youden",
            "threshold": op.get("threshold"),
            "fold_thresholds": op.get("fold_thresholds"),
            "fitted_on": score.get("fitted_on"),
            "binary_source": score.get("binary_source"),
        },
        "overall": {
            "images": len(test),
            "abnormal": int(abnormal.sum()),
            "underdiagnosis_rate": (
                float(np.mean(~called[abnormal])) if called is not None and abnormal.any() else None
            ),
        },
        "bootstrap": bootstrap,
        "min_gap_abnormal": MIN_GAP_ABNORMAL,
    }
    for attribute in table.attributes:
        out[attribute] = {
            name: _subgroup(test, groups[attribute] == name, called, bootstrap, seed, advance)
            for name in SUBGROUPS[attribute]
        }
    out["largest_gap"] = {a: _largest_gap(out[a]) for a in table.attributes}
    return out


def add_subgroups(
    scores: dict[str, dict[str, Any]],
    preds: Mapping[str, Predictions],
    table: AttributeTable | None,
    *,
    bootstrap: int,
    seed: int,
    progress: StartStep | None = None,
) -> None:
    """Put `score_subgroups` into each score (`plain`, `tta`) of `preds` as `"subgroups"`; nothing without a table
    or attributes."""
    if table is None or not table.attributes:
        return
    for key, p in preds.items():
        n_groups = sum(len(SUBGROUPS[a]) for a in table.attributes)
        total = n_groups * bootstrap
        what = f"subgroup bootstrap ({n_groups} subgroups x {bootstrap} patient resamples)"
        advance = progress(what, total) if progress and total else None
        scores[key]["subgroups"] = score_subgroups(p, table, scores[key], bootstrap=bootstrap, seed=seed,
                                                   advance=advance)  # fmt: skip


def csv_subgroup_table(labels_csv: Path, text: str | None) -> AttributeTable | None:
    """`evaluate --predictions`: the table of `--subgroups text` from the labels CSV (else the shipped NIH
    metadata); None for `none`. Built before any scoring, so a missing attribute fails first."""
    request = parse_subgroups(text)
    return table_from_labels_csv(labels_csv, request) if request.attributes else None
