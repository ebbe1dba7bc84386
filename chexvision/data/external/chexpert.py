"""CheXpert (Irvin et al., AAAI 2019; Stanford ML Group): `train.csv` / `valid.csv` of CheXpert-v1.0 (or -small).

Published columns: `Path,Sex,Age,Frontal/Lateral,AP/PA` and the labeller's 14 observations (`No Finding` ...
`Support Devices`, `mapping.CHEXPERT_COLUMNS`) holding 1, 0, -1 (uncertain) or a blank (not mentioned). `Path`
reads `CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg`; the image is looked up under `--images` as
written and without its first folder (so `--images` may be the folder holding `CheXpert-v1.0/` or that folder
itself). Frontal: `Frontal/Lateral` is `Frontal`; the view stored is `AP/PA` (`AP` or `PA`). Sex `Male`/`Female` ->
`M`/`F`; age 0 is unknown (as torchxrayvision reads it). The labeller value rule (`labeller_labels`) is shared with
MIMIC-CXR-JPG, whose labels come from the same labeller.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from chexvision.data.external.mapping import CHEXPERT_COLUMNS, CHEXPERT_TO_NIH, NO_FINDING_COLUMN, chexpert_classes
from chexvision.data.external.table import (
    ExternalTable,
    first_existing,
    numbered_patient_id,
    read_source_csv,
    require_columns,
)
from chexvision.errors import BadInputError
from chexvision.labels import LABELS

__all__ = ["COLUMNS", "labeller_labels", "read_chexpert"]

COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_COLUMNS)
_PATH_RE = re.compile(r"patient(\d+)/study(\d+)/([^/]+?)(\.[A-Za-z0-9]+)?$")
_SEX = {"Male": "M", "Female": "F"}


def labeller_labels(frame: pd.DataFrame, path: Path, uncertain: str) -> tuple[pd.DataFrame, int]:
    """The 14 NIH label columns (1.0 / 0.0 / NaN) from the CheXpert labeller's columns, and the count of uncertain
    cells among the mapped ones. Blank = missing, except where `No Finding` is 1 (all mapped classes negative); -1
    by `uncertain` (ignore: missing, zeros, ones). Any value but 1, 0, -1 or a blank is a BadInputError."""
    out = pd.DataFrame(np.nan, index=frame.index, columns=list(LABELS), dtype=np.float64)
    healthy = _values(frame, NO_FINDING_COLUMN, path) == 1.0
    n_uncertain = 0
    for column, label in CHEXPERT_TO_NIH.items():
        values = _values(frame, column, path)
        is_uncertain = values == -1.0
        n_uncertain += int(is_uncertain.sum())
        replacement = {"ignore": np.nan, "zeros": 0.0, "ones": 1.0}[uncertain]
        values = np.where(is_uncertain, replacement, values)
        values = np.where(np.isnan(values) & healthy & ~is_uncertain, 0.0, values)
        out[label] = values
    return out, n_uncertain


def _values(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = (raw.notna().to_numpy() & ~np.isin(values, (1.0, 0.0, -1.0))) | (raw.isna().to_numpy() & ~np.isnan(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"{path}: column {column!r} holds {raw.iloc[row]!r} (line {row + 2})",
            "CheXpert labeller columns hold 1, 0, -1 (uncertain) or a blank (not mentioned)",
        )
    return values


def read_chexpert(
    images: Path, labels_csv: Path, *, views: str = "frontal", uncertain: str = "ignore"
) -> ExternalTable:
    """The images of a CheXpert CSV found under `images`, with NIH labels (see the module docstring)."""
    raw = read_source_csv(labels_csv, "CheXpert CSV")
    require_columns(raw, COLUMNS, labels_csv, "CheXpert CSV")
    counts = {"rows": len(raw)}
    if views == "frontal":
        raw = raw[raw["Frontal/Lateral"] == "Frontal"]
        counts["not_frontal"] = counts["rows"] - len(raw)
    paths = raw["Path"].astype(str).str.replace("\\", "/", regex=False)
    parsed = paths.str.extract(_PATH_RE)
    bad = parsed[0].isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"{labels_csv}: Path {paths.iloc[row]!r} names no patientN/studyM/<view> image",
            "pass the CSV as published (Path like CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg)",
        )
    pids = [
        numbered_patient_id("chexpert", int(n), f"{labels_csv}: {p}") for n, p in zip(parsed[0], paths, strict=True)
    ]
    ext = parsed[3].fillna(".jpg").str.lower()
    frame = pd.DataFrame(
        {
            "source_path": paths.to_numpy(),
            "filename": [
                f"{pid:08d}_{int(s)}_{v}{e}" for pid, s, v, e in zip(pids, parsed[1], parsed[2], ext, strict=True)
            ],
            "patient_id": pids,
            "age": _ages(raw["Age"]),
            "sex": [_SEX.get(str(s)) for s in raw["Sex"]],
            "view": [
                v if v in ("AP", "PA") else ("LATERAL" if f == "Lateral" else None)
                for v, f in zip(raw["AP/PA"], raw["Frontal/Lateral"], strict=True)
            ],
        },
        index=raw.index,
    )
    labels, counts["uncertain_cells"] = labeller_labels(raw, labels_csv, uncertain)
    frame = pd.concat([frame, labels], axis=1)
    without_first = ["/".join(p.split("/")[1:]) for p in frame["source_path"]]
    frame["path"] = first_existing(images, [list(frame["source_path"]), without_first])
    return _finish(frame, counts, views, uncertain)


def _ages(values: pd.Series) -> list[int | None]:
    ages = pd.to_numeric(values, errors="coerce")
    return [int(a) if np.isfinite(a) and a > 0 else None for a in ages]


def _finish(frame: pd.DataFrame, counts: dict[str, int], views: str, uncertain: str) -> ExternalTable:
    missing = frame["path"].isna()
    table = ExternalTable(
        "chexpert",
        frame[~missing].reset_index(drop=True),
        chexpert_classes(),
        counts={**counts, "image_missing": int(missing.sum())},
        missing_images=list(frame.loc[missing, "source_path"]),
        settings={"views": views, "uncertain": uncertain},
    )
    return table
