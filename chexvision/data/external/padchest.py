"""PadChest (Bustos et al., Medical Image Analysis 2020; BIMCV): `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`.

Columns read (of the published 35; a leading unnamed index column, as torchxrayvision's copy has, is ignored):
`ImageID`, `ImageDir` (the numbered folder of the download holding the image), `StudyDate_DICOM`, `PatientID`,
`PatientBirth` (a year), `PatientSex_DICOM`, `ViewPosition_DICOM`, `Projection`, `Labels`. `Labels` is written like
a Python list of strings (`['pleural effusion', ' cardiomegaly']`); `parse_labels_list` reads exactly that grammar
(quoted strings, commas, brackets) and nothing else: it is never evaluated. A row without `Labels` is left out
(unlabelled, as torchxrayvision does), and so is one PadChest marked `exclude`. Labels map by `PADCHEST_TO_NIH`.

Frontal: `Projection` `PA`, `AP` or `AP_horizontal` (AP supine; stored as view `AP`); where `Projection` is blank or
`UNK`, `ViewPosition_DICOM` (`POSTEROANTERIOR`/`PA`, `ANTEROPOSTERIOR`/`AP`). Images are 16-bit PNGs, read at
`--images/<ImageDir>/<ImageID>` or `--images/<ImageID>`; decoding stretches the used range to 8 bit. Age: the study
year minus `PatientBirth`. Paediatric images are kept (`Pediatric` is not a filter here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from chexvision.data.external.mapping import PADCHEST_EXCLUDE, PADCHEST_TO_NIH, padchest_classes
from chexvision.data.external.table import (
    ExternalTable,
    first_existing,
    hashed_patient_id,
    read_source_csv,
    require_columns,
)
from chexvision.errors import BadInputError
from chexvision.labels import LABELS

__all__ = ["COLUMNS", "padchest_nih_labels", "parse_labels_list", "read_padchest"]

COLUMNS = (
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "Labels",
)
_PROJECTION_VIEW = {"PA": "PA", "AP": "AP", "AP_horizontal": "AP", "L": "LATERAL", "COSTAL": "COSTAL"}
_DICOM_VIEW = {"POSTEROANTERIOR": "PA", "PA": "PA", "ANTEROPOSTERIOR": "AP", "AP": "AP", "LATERAL": "LATERAL"}


def parse_labels_list(text: str) -> list[str]:
    """`['a', " b"]` -> `['a', ' b']`: a bracketed, comma-separated list of quoted strings; ValueError otherwise."""
    s = text.strip()
    if len(s) < 2 or s[0] != "[" or s[-1] != "]":
        raise ValueError(f"not a bracketed list: {text!r}")
    items: list[str] = []
    i, end = 1, len(s) - 1
    expect_item = True
    while True:
        while i < end and s[i].isspace():
            i += 1
        if i == end:
            if not expect_item or not items:
                return items
            raise ValueError(f"a trailing comma in {text!r}")
        if not expect_item:
            if s[i] != ",":
                raise ValueError(f"expected ',' at {i} in {text!r}")
            i, expect_item = i + 1, True
            continue
        quote = s[i]
        if quote not in "'\"":
            raise ValueError(f"expected a quoted string at {i} in {text!r}")
        close = s.find(quote, i + 1)
        if close < 0 or close >= end:
            raise ValueError(f"an unclosed string in {text!r}")
        items.append(s[i + 1 : close])
        i, expect_item = close + 1, False


def padchest_nih_labels(terms: Sequence[str]) -> set[str]:
    """The NIH findings a PadChest label list names (terms trimmed and lower-cased, then `PADCHEST_TO_NIH`)."""
    found: set[str] = set()
    for term in terms:
        found.update(PADCHEST_TO_NIH.get(term.strip().lower(), ()))
    return found


def read_padchest(images: Path, labels_csv: Path, *, views: str = "frontal") -> ExternalTable:
    """The images of the PadChest CSV found under `images`, with NIH labels (see the module docstring)."""
    raw = read_source_csv(labels_csv, "PadChest CSV")
    require_columns(raw, COLUMNS, labels_csv, "PadChest CSV")
    counts = {"rows": len(raw)}
    raw = raw[raw["Labels"].notna()]
    counts["unlabelled"] = counts["rows"] - len(raw)
    views_found = [_view(p, d) for p, d in zip(raw["Projection"], raw["ViewPosition_DICOM"], strict=True)]
    raw = raw.assign(view=pd.Series(views_found, index=raw.index, dtype=object))
    if views == "frontal":
        kept = raw[raw["view"].isin(("PA", "AP"))]
        counts["not_frontal"], raw = len(raw) - len(kept), kept
    terms = [_terms(text, labels_csv, int(row)) for row, text in zip(raw.index, raw["Labels"], strict=True)]
    excluded = np.array([any(t.strip().lower() == PADCHEST_EXCLUDE for t in ts) for ts in terms], dtype=bool)
    counts["excluded"] = int(excluded.sum())
    raw = raw[~excluded]
    terms = [t for t, e in zip(terms, excluded, strict=True) if not e]
    y = np.zeros((len(raw), len(LABELS)), dtype=np.float64)
    classes = padchest_classes()
    for i, ts in enumerate(terms):
        for label in padchest_nih_labels(ts):
            y[i, LABELS.index(label)] = 1.0
    y[:, [k for k, label in enumerate(LABELS) if label not in classes]] = np.nan  # unmapped classes: missing
    image_ids = [str(v).strip() for v in raw["ImageID"]]
    pids = [hashed_patient_id("padchest", str(p)) for p in raw["PatientID"]]
    folders = [_folder(v) for v in raw["ImageDir"]]
    frame = pd.DataFrame(
        {
            "source_path": [f"{d}/{name}" if d else name for d, name in zip(folders, image_ids, strict=True)],
            "filename": [
                f"{pid:08d}_{n}" if n[:1].isdigit() else f"{pid:08d}_0_{n}"
                for pid, n in zip(pids, image_ids, strict=True)
            ],
            "patient_id": pids,
            "age": _ages(raw["StudyDate_DICOM"], raw["PatientBirth"]),
            "sex": [s if s in ("M", "F") else None for s in raw["PatientSex_DICOM"]],
            "view": list(raw["view"]),
        }
    )
    frame[list(LABELS)] = y
    frame["path"] = first_existing(images, [list(frame["source_path"]), image_ids])
    missing = frame["path"].isna()
    return ExternalTable(
        "padchest",
        frame[~missing].reset_index(drop=True),
        classes,
        counts={**counts, "image_missing": int(missing.sum())},
        missing_images=list(frame.loc[missing, "source_path"]),
        settings={"views": views},
    )


def _terms(text: str, path: Path, row: int) -> list[str]:
    try:
        return parse_labels_list(text)
    except ValueError as exc:
        raise BadInputError(
            f"{path}: Labels of line {row + 2} cannot be read: {exc}",
            "Labels must be a list of quoted terms, e.g. ['pleural effusion', 'cardiomegaly'], as published",
        ) from None


def _view(projection: object, dicom: object) -> str | None:
    if isinstance(projection, str) and projection in _PROJECTION_VIEW:
        return _PROJECTION_VIEW[projection]
    if isinstance(projection, str) and projection not in ("", "UNK"):
        return None  # EXCLUDE and the odd other value: not a usable chest view
    return _DICOM_VIEW.get(dicom.strip().upper()) if isinstance(dicom, str) else None


def _folder(value: object) -> str:
    """`ImageDir` as the download's folder name (`0` ... `54`; the CSV may write `12.0`)."""
    if not isinstance(value, str) or not value.strip():
        return ""
    number = pd.to_numeric(value, errors="coerce")
    return str(int(number)) if np.isfinite(number) and float(number).is_integer() else value.strip()


def _ages(study_dates: pd.Series, births: pd.Series) -> list[int | None]:
    year = pd.to_numeric(study_dates.astype(str).str[:4], errors="coerce").to_numpy(dtype=np.float64)
    birth = pd.to_numeric(births, errors="coerce").to_numpy(dtype=np.float64)
    age = year - birth
    return [int(a) if np.isfinite(a) and 0 <= a <= 120 else None for a in age]
