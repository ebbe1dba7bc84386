"""Patient-disjoint train/val/test splits over image names: `official`, `chexnet` and `patient` (DESIGN §2).

- official: test = names in the NIH official test list; train+val = every other name; val = a seeded
  `val_fraction` of the train+val *patients*. Needs only `official_test.txt.gz`.
- chexnet: the CheXNet train/val/test lists (Rajpurkar et al. 2017); names in none of them are dropped.
- patient: seeded 70/10/20 by patient, for data sets without lists (synthetic data).

Every split is checked for patient overlap before it is returned; a leak is a `BadInputError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chexvision.config import SPLIT_SCHEMES
from chexvision.data.metadata import load_split_list
from chexvision.errors import BadInputError
from chexvision.labels import LABELS, label_matrix

__all__ = [
    "SPLIT_NAMES",
    "SPLIT_SCHEMES",
    "Split",
    "check_disjoint",
    "default_split_scheme",
    "make_split",
    "patient_ids",
    "split_summary",
]

SPLIT_NAMES = ("train", "val", "test")
_PATIENT_TEST_FRACTION = 0.2  # the `patient` scheme: 70/10/20


class Split(dict[str, np.ndarray]):
    """`{"train", "val", "test"}` -> sorted int64 indices into the names; `dropped`: names in no split."""

    def __init__(self, parts: dict[str, np.ndarray], *, scheme: str, dropped: int = 0) -> None:
        super().__init__(parts)
        self.scheme = scheme
        self.dropped = dropped


def _basenames(filenames: Sequence[str]) -> pa.Array:
    values = filenames if isinstance(filenames, list | np.ndarray) else list(filenames)
    names = pa.array(values, type=pa.string())
    if pc.any(pc.match_substring_regex(names, r"[/\\]")).as_py():
        names = pc.replace_substring_regex(names, r"^.*[/\\]", "")
    return names


def patient_ids(filenames: Sequence[str]) -> np.ndarray:
    """int64 patient id per NIH-style name (`00012345_003.png` -> 12345); BadInputError naming a bad name."""
    if len(filenames) == 0:
        return np.zeros(0, dtype=np.int64)
    # pyarrow compute: vectorised regex and slicing (pandas' str.extract runs Python per row, ~0.3 s at 112k).
    names = _basenames(filenames)
    good = pc.fill_null(pc.match_substring_regex(names, r"^\d{8}_\d+"), False).to_numpy(zero_copy_only=False)
    if not good.all():
        bad = np.flatnonzero(~good)
        raise BadInputError(
            f"{len(bad)} image names carry no patient id (e.g. {str(np.asarray(filenames, dtype=object)[bad[0]])!r})",
            "patient-disjoint splits need NIH-style names like 00012345_003.png",
        )
    digits = pc.utf8_slice_codeunits(names, 0, 8)
    return np.asarray(pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


@cache
def _listed(name: str) -> frozenset[str]:
    """A shipped split list as a set, read once per process (the loader splits train, val and test)."""
    return frozenset(load_split_list(name))


def _member(names: pa.Array, listed: frozenset[str]) -> np.ndarray:
    # A set lookup per name: pandas' isin on Arrow-backed strings builds a Python list per call (~0.4 s at 112k).
    return np.fromiter((name in listed for name in names.to_pylist()), dtype=bool, count=len(names))


def _rng_permutation(values: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.sort(values))


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


def _split_official(names: pa.Array, pids: np.ndarray, seed: int, val_fraction: float) -> Split:
    is_test = _member(names, _listed("official_test"))
    trainval_patients = np.unique(pids[~is_test])
    n_val = _fraction_count(len(trainval_patients), val_fraction)
    val_patients = _rng_permutation(trainval_patients, seed)[:n_val]
    is_val = ~is_test & np.isin(pids, val_patients)
    parts = {"train": _indices(~is_test & ~is_val), "val": _indices(is_val), "test": _indices(is_test)}
    return Split(parts, scheme="official")


def _split_chexnet(names: pa.Array) -> Split:
    parts = {}
    assigned = np.zeros(len(names), dtype=bool)
    for part, list_name in (("train", "chexnet_train"), ("val", "chexnet_val"), ("test", "chexnet_test")):
        mask = _member(names, _listed(list_name)) & ~assigned
        assigned |= mask
        parts[part] = _indices(mask)
    return Split(parts, scheme="chexnet", dropped=int((~assigned).sum()))


def _split_patient(pids: np.ndarray, seed: int, val_fraction: float) -> Split:
    patients = _rng_permutation(np.unique(pids), seed)
    n_test = _fraction_count(len(patients), _PATIENT_TEST_FRACTION)
    n_val = min(_fraction_count(len(patients), val_fraction), max(len(patients) - n_test - 1, 0))
    is_test = np.isin(pids, patients[:n_test])
    is_val = np.isin(pids, patients[n_test : n_test + n_val])
    parts = {"train": _indices(~is_test & ~is_val), "val": _indices(is_val), "test": _indices(is_test)}
    return Split(parts, scheme="patient")


def _fraction_count(n: int, fraction: float) -> int:
    """round(n * fraction), but at least one when the fraction is positive and there are >= 2 to share."""
    count = round(n * fraction)
    if count == 0 and fraction > 0 and n >= 2:
        count = 1
    return min(count, max(n - 1, 0))


def default_split_scheme(dataset_meta: Mapping[str, Any]) -> str:
    """The scheme a data folder asks for in its dataset.json (synthetic data: patient), else official."""
    return str(dataset_meta.get("default_split_scheme", "official"))


def make_split(filenames: Sequence[str], scheme: str = "official", seed: int = 0, val_fraction: float = 0.1) -> Split:
    """Split image names by patient. Returns a `Split` (a dict "train"/"val"/"test" -> int64 indices).

    `val_fraction` is the share of train+val patients held out for validation (official) or of all patients
    (patient scheme). The result is checked with `check_disjoint` before it is returned.
    """
    if scheme not in SPLIT_SCHEMES:
        raise BadInputError(f"unknown split scheme {scheme!r}", f"choose one of {', '.join(SPLIT_SCHEMES)}")
    if not 0.0 <= val_fraction < 1.0:
        raise BadInputError(f"val_fraction {val_fraction} is outside [0, 1)", "use e.g. 0.1")
    names = _basenames(filenames)
    pids = patient_ids(filenames)
    if scheme == "official":
        split = _split_official(names, pids, seed, val_fraction)
    elif scheme == "chexnet":
        split = _split_chexnet(names)
    else:
        split = _split_patient(pids, seed, val_fraction)
    check_disjoint(filenames, split, pids=pids)
    return split


def check_disjoint(filenames: Sequence[str], split: dict[str, np.ndarray], *, pids: np.ndarray | None = None) -> None:
    """Raise BadInputError when an image or a patient appears in more than one split."""
    pids = patient_ids(filenames) if pids is None else pids
    parts = [name for name in SPLIT_NAMES if name in split]
    for i, first in enumerate(parts):
        for second in parts[i + 1 :]:
            leaked = np.intersect1d(pids[split[first]], pids[split[second]])
            if len(leaked):
                raise BadInputError(
                    f"split leak: {len(leaked)} patients are in both {first} and {second} "
                    f"(e.g. patient {int(leaked[0])})",
                    "splits must be patient-disjoint; use `--split-scheme patient` for data without lists",
                )


def split_summary(filenames: Sequence[str], labels: Sequence[str], split: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per split: images, patients and per-class prevalence (fraction of images with the label)."""
    pids = patient_ids(filenames)
    matrix = label_matrix(labels)
    summary: dict[str, Any] = {}
    for name in SPLIT_NAMES:
        idx = split.get(name, np.zeros(0, dtype=np.int64))
        prevalence = matrix[idx].mean(axis=0) if len(idx) else np.zeros(len(LABELS))
        summary[name] = {
            "images": len(idx),
            "patients": len(np.unique(pids[idx])),
            "prevalence": {label: round(float(p), 6) for label, p in zip(LABELS, prevalence, strict=True)},
        }
    return summary
