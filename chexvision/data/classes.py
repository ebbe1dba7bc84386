"""Which of the 14 NIH findings a data set defines, and the per-image class mask evaluation scores with.

A data set built from another source (CheXpert, PadChest, ...) labels only some of the NIH findings. Scoring the
others as negatives would be wrong (an unlabelled Hernia is not a negative Hernia), so a data set says what it
defines, in one of two places:

* **dataset.json** `"classes": ["Atelectasis", "Effusion", ...]`: the NIH findings every image of the folder is
  labelled for (any spelling `canonical_label` accepts; stored in NIH spelling). Absent: all 14. The `labels`
  column of its shards then lists positives among those classes only.
* **a labels CSV** (`evaluate --predictions P --labels L`) with one column per class (NIH name, any accepted
  spelling) holding `1` (positive), `0` (negative) or a blank (not defined for that image: NaN). A class with no
  column is not defined for any image. Such a CSV needs no `Finding Labels` column.

Both end as a boolean `defined` matrix [N, 14] beside the 0/1 label matrix: `defined[i, k]` says whether image i
has a label for class k. Evaluation leaves undefined (image, class) pairs out of per-class metrics, scores a class
only where it is defined, and leaves out of the macro (and reports as `classes_not_defined`) the classes defined for
no image. `None` in place of the matrix means every class is defined for every image (NIH data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from chexvision.errors import BadInputError
from chexvision.labels import LABELS, canonical_label

__all__ = [
    "class_columns",
    "classes_mask",
    "dataset_classes",
    "defined_classes",
    "image_classes_mask",
    "read_class_columns",
]


def dataset_classes(meta: Mapping[str, Any], where: str = "dataset.json") -> tuple[str, ...]:
    """The NIH findings a dataset.json defines (`"classes"`), in LABELS order; all 14 when the key is absent.

    A key that is not a non-empty list of known finding names is a BadInputError naming `where`."""
    raw = meta.get("classes")
    if raw is None:
        return LABELS
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise BadInputError(
            f'{where}: "classes" must be a non-empty list of NIH finding names, not {raw!r}',
            'e.g. "classes": ["Atelectasis", "Cardiomegaly", "Effusion"]; omit it when all 14 are labelled',
        )
    names = set()
    for name in raw:
        try:
            names.add(canonical_label(name))
        except ValueError:
            raise BadInputError(
                f'{where}: "classes" names {name!r}, which is not one of the 14 NIH findings',
                f"use the NIH names: {', '.join(LABELS)}",
            ) from None
    return tuple(label for label in LABELS if label in names)


def classes_mask(classes: Sequence[str], n: int) -> np.ndarray | None:
    """The `defined` matrix [n, 14] of images all labelled for `classes`; None when that is all 14."""
    wanted = {canonical_label(c) for c in classes}
    if wanted >= set(LABELS):
        return None
    row = np.array([label in wanted for label in LABELS], dtype=bool)
    return np.tile(row, (n, 1))


def image_classes_mask(texts: Sequence[object], classes: Sequence[str]) -> np.ndarray | None:
    """The `defined` matrix [n, 14] from a shard's per-image `classes` column (`A|B` in NIH names; empty: none; a
    null: the folder's `classes`); None when every image is labelled for all 14. Unknown names are a BadInputError."""
    folder = {canonical_label(c) for c in classes}
    mask = np.zeros((len(texts), len(LABELS)), dtype=bool)
    rows: dict[object, np.ndarray] = {}
    for i, text in enumerate(texts):
        if text not in rows:
            try:
                names = folder if text is None else {canonical_label(n) for n in str(text).split("|") if n}
            except ValueError as exc:
                raise BadInputError(f"a shard's `classes` holds {text!r}: {exc}", "rebuild that data folder") from None
            rows[text] = np.array([label in names for label in LABELS], dtype=bool)
        mask[i] = rows[text]
    return None if mask.all() else mask


def defined_classes(defined: np.ndarray | None) -> tuple[list[str], list[str]]:
    """(classes defined for at least one image, classes defined for none), in LABELS order."""
    if defined is None:
        return list(LABELS), []
    mask = np.asarray(defined, dtype=bool)
    any_image = np.asarray(mask.any(axis=0)) if len(mask) else np.zeros(len(LABELS), dtype=bool)
    return [n for k, n in enumerate(LABELS) if any_image[k]], [n for k, n in enumerate(LABELS) if not any_image[k]]


def class_columns(columns: Sequence[object]) -> dict[str, str]:
    """NIH label -> the column of a frame naming it (`Effusion`, `Pleural Thickening`, ...); others ignored."""
    found: dict[str, str] = {}
    for col in map(str, columns):
        try:
            label = canonical_label(col)
        except ValueError:
            continue
        if label in found:
            raise BadInputError(
                f"two columns for {label}: {found[label]!r} and {col!r}", "keep one label column per finding"
            )
        found[label] = col
    return found


def read_class_columns(frame: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels [N, 14] float32 0/1, defined [N, 14] bool or None when every cell is defined) from per-class
    1/0/blank columns; a class without a column is undefined everywhere. Any other value is a BadInputError."""
    columns = class_columns(list(frame.columns))
    y = np.zeros((len(frame), len(LABELS)), dtype=np.float32)
    defined = np.zeros((len(frame), len(LABELS)), dtype=bool)
    for k, label in enumerate(LABELS):
        if label not in columns:
            continue
        values = pd.to_numeric(frame[columns[label]], errors="coerce").to_numpy(dtype=np.float64)
        raw_blank = frame[columns[label]].isna().to_numpy()
        bad = (~raw_blank & ~np.isin(values, (0.0, 1.0))) | (raw_blank & ~np.isnan(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise BadInputError(
                f"{where}: column {columns[label]!r} holds {str(frame[columns[label]].iloc[row])!r} (line {row + 2})",
                "per-class label columns hold 1 (positive), 0 (negative) or a blank (not labelled for that image)",
            )
        defined[:, k] = ~raw_blank
        y[:, k] = np.where(raw_blank, 0.0, values)
    return y, (None if defined.all() else defined)
