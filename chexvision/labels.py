"""The 14 NIH ChestX-ray14 pathologies in canonical order, and the `A|B` / `No Finding` label strings."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

__all__ = [
    "LABELS",
    "NO_FINDING",
    "NUM_LABELS",
    "canonical_label",
    "format_labels",
    "is_abnormal",
    "label_matrix",
    "label_string_problem",
    "labels_to_vector",
    "parse_labels",
    "patient_id_from_filename",
]

LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_LABELS = len(LABELS)
NO_FINDING = "No Finding"

_INDEX = {name: i for i, name in enumerate(LABELS)}
# Spellings seen in the wild (CheXNet repos, prediction files): map a normalised key to the NIH name.
_ALIASES = {name.lower().replace("_", " "): name for name in LABELS}
_PATIENT_RE = re.compile(r"^(\d{8})_\d+")


def canonical_label(name: str) -> str:
    """Return the NIH spelling of a label (`Pleural Thickening` -> `Pleural_Thickening`); raise on unknown."""
    key = name.strip().lower().replace("_", " ")
    if key.startswith("prob "):  # prediction files often prefix columns with `prob_`
        key = key[5:]
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(f"unknown label {name!r}; expected one of {', '.join(LABELS)} or {NO_FINDING!r}") from None


def parse_labels(text: str) -> list[str]:
    """Parse an NIH label string (`Effusion|Mass` or `No Finding`) into canonical names, in canonical order."""
    text = text.strip()
    if not text or text == NO_FINDING:
        return []
    names = {canonical_label(part) for part in text.split("|") if part.strip()}
    if not names:
        raise ValueError(f"empty label string {text!r}")
    return sorted(names, key=_INDEX.__getitem__)


@lru_cache(maxsize=4096)
def label_string_problem(text: object) -> str | None:
    """None when `text` is an NIH label string in the exact NIH spelling, else what is wrong with it.

    Stored labels (shards, a Data_Entry CSV) must spell every name exactly (`Effusion|Mass`, `No Finding`): a
    wrongly cased or unknown name (`no finding`, `Covid19`) is reported, never guessed. `parse_labels` stays lenient
    for hand-written inputs (prediction files, `Pleural Thickening`).
    """
    if not isinstance(text, str) or not text.strip():
        return "an empty label string"
    if text == NO_FINDING:
        return None
    for part in text.split("|"):
        if part == NO_FINDING:
            return f"{NO_FINDING!r} mixed with findings in {text!r}"
        if part not in _INDEX:
            guess = _closest_label(part)
            where = f" in {text!r}" if part != text else ""
            return f"unknown label {part!r}{where}" + (f" (did you mean {guess!r}?)" if guess else "")
    return None


def _closest_label(name: str) -> str | None:
    """The NIH name a misspelt one most likely means (case, `_` for space, a typo), or None."""
    key = name.strip().lower().replace("_", " ")
    if key == NO_FINDING.lower():
        return NO_FINDING
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(name, [*LABELS, NO_FINDING], n=1, cutoff=0.6)
    return close[0] if close else None


def format_labels(names: Iterable[str]) -> str:
    """Format label names as the NIH string: canonical order joined by `|`, or `No Finding`."""
    canon = sorted({canonical_label(n) for n in names}, key=_INDEX.__getitem__)
    return "|".join(canon) if canon else NO_FINDING


def labels_to_vector(text: str) -> np.ndarray:
    """Multi-hot float32 vector of length 14 for an NIH label string."""
    vec = np.zeros(NUM_LABELS, dtype=np.float32)
    for name in parse_labels(text):
        vec[_INDEX[name]] = 1.0
    return vec


def is_abnormal(text: str) -> int:
    """Binary triage target: 0 for `No Finding`, 1 for anything else."""
    return 0 if not parse_labels(text) else 1


def patient_id_from_filename(filename: str) -> int:
    """NIH patient id from an image name: `00012345_003.png` -> 12345 (directories are ignored)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    match = _PATIENT_RE.match(base)
    if not match:
        raise ValueError(f"cannot read a patient id from {filename!r}; expected NIH names like 00012345_003.png")
    return int(match.group(1))


def label_matrix(texts: Sequence[str]) -> np.ndarray:
    """(N, 14) float32 multi-hot matrix of label strings ((0, 14) for none).

    Each distinct string is parsed once: NIH's 112k images carry only ~800 distinct label strings.
    """
    rows: dict[str, int] = {}
    codes = np.fromiter((rows.setdefault(str(t), len(rows)) for t in texts), dtype=np.int64, count=len(texts))
    table = np.zeros((len(rows), NUM_LABELS), dtype=np.float32)
    for text, row in rows.items():
        table[row] = labels_to_vector(text)
    return table[codes]
