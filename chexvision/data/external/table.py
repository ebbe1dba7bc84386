"""What every external reader returns (`ExternalTable`), and the rules they share: patient ids, file names, CSVs.

Our splits and the patient bootstrap read the patient id from the file name (`00012345_003.png`: the first 8
digits, `chexvision.data.splits`), so an external image is stored under an NIH-style name that starts with its
patient's id, in a range of its own so the sets never share a patient with each other or with NIH (ids 1-30805;
synthetic data from 90000000):

| set | patient id | stored file name |
|---|---|---|
| MIMIC-CXR-JPG | `subject_id` itself (10000000-19999999) | `{subject_id}_{study_id}_{dicom_id}.jpg` |
| CheXpert | 20000000 + N of `patientN` in `Path` | `{id}_{study}_{view stem}.jpg` (`20000001_1_view1_frontal.jpg`) |
| PadChest | 30000000 + sha256(`PatientID`) mod 10^7 | `{id}_{ImageID}` |

PadChest's `PatientID` is a 36-digit number, so it is hashed into the range: two patients may share an id (about
one pair per 150 patients in 67,000), which only puts both in the same split: splits stay patient-disjoint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexvision.errors import BadInputError
from chexvision.labels import LABELS

__all__ = [
    "PATIENT_ID_BASE",
    "ExternalTable",
    "first_existing",
    "hashed_patient_id",
    "numbered_patient_id",
    "read_source_csv",
    "require_columns",
]

# First patient id of each set (see the module docstring); MIMIC's own subject ids already lie in 10000000-19999999.
PATIENT_ID_BASE = {"mimic-cxr-jpg": 10_000_000, "chexpert": 20_000_000, "padchest": 30_000_000}
_ID_RANGE = 10_000_000


@dataclass
class ExternalTable:
    """The images a set's CSVs describe, after the view filter, with their labels mapped onto the NIH findings.

    `frame` columns: `path` (the image file), `source_path` (as the CSV names it), `filename` (ours), `patient_id`,
    `age`, `sex`, `view`, and one float column per NIH label in LABELS: 1.0, 0.0 or NaN (missing). `classes`: the
    NIH findings the set labels at all. `counts`: rows read and why rows were left out.
    """

    source: str
    frame: pd.DataFrame
    classes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def label_matrix(self) -> np.ndarray:
        """[N, 14] float32: 1, 0 or NaN (missing)."""
        return self.frame[list(LABELS)].to_numpy(dtype=np.float32)


def read_source_csv(path: Path, what: str) -> pd.DataFrame:
    """A set's CSV as strings (blank: NaN), so ids and labels are parsed by us, never guessed by a type sniffer."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {path} not found", f"pass the {what} as published with the data set")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], low_memory=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = "".join(ch if ch.isprintable() else "?" for ch in str(exc))[:200]
        raise BadInputError(f"cannot read {what} {path}: {reason}", f"pass the {what} as published") from exc


def require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path, what: str) -> None:
    """A BadInputError naming the columns the published layout has and `path` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"{what} {path} lacks column(s) {', '.join(repr(c) for c in missing)}",
            f"pass the {what} in its published layout (columns {', '.join(columns)})",
        )


def hashed_patient_id(source: str, raw: str) -> int:
    """A set's own patient identifier (any string) as an 8-digit id in that set's range (module docstring)."""
    digest = int.from_bytes(hashlib.sha256(raw.strip().encode()).digest()[:8], "big")
    return PATIENT_ID_BASE[source] + digest % _ID_RANGE


def numbered_patient_id(source: str, number: int, where: str) -> int:
    """A set's own patient number as an 8-digit id in that set's range; BadInputError when it does not fit."""
    if not 0 <= number < _ID_RANGE:
        raise BadInputError(
            f"{where}: patient number {number} does not fit the {source} id range",
            "patient numbers must be below 10,000,000 (the published sets are)",
        )
    return PATIENT_ID_BASE[source] + number


def first_existing(images_dir: Path, candidates: Sequence[Sequence[str]]) -> list[str | None]:
    """Per image, the first of its candidate relative paths that is a file under `images_dir` (None: none is).

    `candidates[k]` holds the k-th guess for every image (e.g. the CSV's path, then the path without its first
    folder); the guess that found the previous image is tried first, so a whole set costs about one stat per image.
    """
    root = str(images_dir)
    found: list[str | None] = []
    order = list(range(len(candidates)))
    for i in range(len(candidates[0]) if candidates else 0):
        hit = None
        for k in order:
            rel = candidates[k][i]
            if rel and os.path.isfile(full := os.path.join(root, rel)):
                hit = full
                if order[0] != k:
                    order.remove(k)
                    order.insert(0, k)
                break
        found.append(hit)
    return found
