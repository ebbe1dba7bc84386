"""Patient-disjoint train/val/test splits over image names: `official`, `chexnet` and `patient` (DESIGN §2).

A patient's split is a function of (scheme, seed, patient id) only, never of which other images a folder holds, so
any subset of a data set (a folder with images missing, an evaluation folder) gets exactly the assignment training
saw (`SPLIT_RULE` names this rule in run.json):

- official: test = names in the NIH official test list; train+val = every other name; val = a seeded
  `val_fraction` of the NIH train+val *patients*, drawn over the full patient list (the 28,008 patients of
  `official_train_val.txt.gz`; without that file, the same list derived from the 30,805 NIH patient ids minus
  those of `official_test.txt.gz`). A patient outside the NIH list: val when `unit_hash(seed, id) < val_fraction`.
- chexnet: the CheXNet train/val/test lists (Rajpurkar et al. 2017); names in none of them are dropped.
- patient: for data sets without lists (synthetic, external): u = `unit_hash(seed, id)` (sha256 of
  f"{seed}:{id}" mapped to [0, 1)); train u < 0.8 - val_fraction, val below 0.8, test from 0.8 (70/10/20).

Every split is checked for patient overlap before it is returned; a leak is a `BadInputError`.
`split_fingerprints` gives each split's {count, sha256 of its sorted image names} (run.json
`dataset.split_fingerprints`), which evaluation compares with the images it scores.
"""

from __future__ import annotations

import hashlib
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
    "SPLIT_RULE",
    "SPLIT_SCHEMES",
    "Split",
    "check_disjoint",
    "default_split_scheme",
    "fingerprint",
    "make_split",
    "nih_trainval_patients",
    "patient_ids",
    "split_fingerprints",
    "split_summary",
    "unit_hash",
]

SPLIT_NAMES = ("train", "val", "test")
SPLIT_RULE = "patient-hash-v1"  # run.json dataset.split_rule: runs without it split by the folder's own images
_PATIENT_TEST_FRACTION = 0.2  # the `patient` scheme: 70/10/20
NIH_PATIENTS = 30805  # NIH ChestX-ray14 patient ids run 1..30805 (checked against the shipped metadata in tests)


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


def unit_hash(seed: int, pids: np.ndarray) -> np.ndarray:
    """Per patient id, sha256(f"{seed}:{id}")'s first 8 bytes as a float in [0, 1): a seeded, folder-free draw."""
    unique, inverse = np.unique(np.asarray(pids, dtype=np.int64), return_inverse=True)
    draws = np.fromiter(
        (int.from_bytes(hashlib.sha256(f"{seed}:{int(p)}".encode()).digest()[:8], "big") / 2.0**64 for p in unique),
        dtype=np.float64,
        count=len(unique),
    )
    return draws[inverse].reshape(-1)


@cache
def nih_trainval_patients() -> np.ndarray:
    """Sorted ids of the 28,008 NIH train+val patients: the official train_val list's, else all minus the test's."""
    try:
        listed = load_split_list("official_train_val")
    except BadInputError:  # a remote bundle keeps only official_test.txt.gz: the same patients, derived
        test = np.unique(patient_ids(sorted(_listed("official_test"))))
        return np.setdiff1d(np.arange(1, NIH_PATIENTS + 1, dtype=np.int64), test)
    return np.unique(patient_ids(listed))


@cache
def _nih_val_patients(seed: int, val_fraction: float) -> np.ndarray:
    patients = nih_trainval_patients()
    n_val = _fraction_count(len(patients), val_fraction)
    return np.sort(np.random.default_rng(seed).permutation(patients)[:n_val])


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int64)


def _split_official(names: pa.Array, pids: np.ndarray, seed: int, val_fraction: float) -> Split:
    is_test = _member(names, _listed("official_test"))
    in_nih = np.isin(pids, nih_trainval_patients())
    is_val = ~is_test & np.where(
        in_nih, np.isin(pids, _nih_val_patients(seed, val_fraction)), unit_hash(seed, pids) < val_fraction
    )
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
    u = unit_hash(seed, pids)
    is_test = u >= 1.0 - _PATIENT_TEST_FRACTION
    is_val = ~is_test & (u >= 1.0 - _PATIENT_TEST_FRACTION - val_fraction)
    parts = {"train": _indices(~is_test & ~is_val), "val": _indices(is_val), "test": _indices(is_test)}
    return Split(parts, scheme="patient")


def _fraction_count(n: int, fraction: float) -> int:
    """round(n * fraction), but at least one when the fraction is positive and there are >= 2 to share."""
    count = round(n * fraction)
    if count == 0 and fraction > 0 and n >= 2:
        count = 1
    return min(count, max(n - 1, 0))


def fingerprint(names: Sequence[str]) -> dict[str, Any]:
    """`{count, sha256}` of a set of image names: sha256 of their sorted base names joined by newlines (UTF-8)."""
    base = sorted(_basenames(list(names)).to_pylist()) if len(names) else []
    return {"count": len(base), "sha256": hashlib.sha256("\n".join(base).encode("utf-8")).hexdigest()}


def split_fingerprints(filenames: Sequence[str], split: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per split (train, val, test): `fingerprint` of its image names (run.json `dataset.split_fingerprints`)."""
    values = np.asarray(filenames, dtype=object)
    return {part: fingerprint(list(values[split[part]])) for part in SPLIT_NAMES if part in split}


def default_split_scheme(dataset_meta: Mapping[str, Any]) -> str:
    """The scheme a data folder asks for in its dataset.json (synthetic data: patient), else official."""
    return str(dataset_meta.get("default_split_scheme", "official"))


def make_split(filenames: Sequence[str], scheme: str = "official", seed: int = 0, val_fraction: float = 0.1) -> Split:
    """Split image names by patient. Returns a `Split` (a dict "train"/"val"/"test" -> int64 indices).

    `val_fraction` is the share of NIH train+val patients held out for validation (official) or the width of the
    validation band of the patient hash (patient scheme: at most 0.8). Each patient's split depends only on
    (scheme, seed, patient id). The result is checked with `check_disjoint` before it is returned.
    """
    if scheme not in SPLIT_SCHEMES:
        raise BadInputError(f"unknown split scheme {scheme!r}", f"choose one of {', '.join(SPLIT_SCHEMES)}")
    if not 0.0 <= val_fraction < 1.0:
        raise BadInputError(f"val_fraction {val_fraction} is outside [0, 1)", "use e.g. 0.1")
    if scheme == "patient" and val_fraction > 1.0 - _PATIENT_TEST_FRACTION:
        raise BadInputError(f"val_fraction {val_fraction} leaves no training patients", "use e.g. 0.1")
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
