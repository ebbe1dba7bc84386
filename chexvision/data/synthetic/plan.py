"""The plan of the synthetic data set: NIH label-set weighting, patients, file names, labels and metadata per image.

Drawn from the seed alone, before any rendering (see `chexvision.data.synthetic` for the weighting rule).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.labels import LABELS, NO_FINDING, parse_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FOLLOW_UPS",
    "MIN_PREVALENCE",
    "NO_FINDING_SHARE",
    "PATIENT_ID_START",
    "PlannedImage",
    "label_prevalence",
    "nih_statistics",
    "plan_images",
    "sample_labels",
]

MIN_PREVALENCE = 0.05  # every class is positive in at least this fraction of images (target)
NO_FINDING_SHARE = 0.45  # fraction of `No Finding` images (target)
PATIENT_ID_START = 90_000_000  # synthetic patient ids never collide with NIH's (1..30805)
FOLLOW_UPS = (0.4, 0.3, 0.2, 0.1)  # P(1, 2, 3, 4 images per patient)
# Derived from Data_Entry_2017_v2020.csv by `nih_statistics` (a few KB instead of 1 MB, so remote kernels carry it).
_STATS = "nih_synth_stats.json.gz"


@dataclass(frozen=True)
class _NihTables:
    label_sets: tuple[str, ...]  # distinct `Finding Labels` values, canonical spelling
    probs: np.ndarray  # re-weighted sampling probability of each set
    matrix: np.ndarray  # (K, 14) multi-hot of each set
    ages: np.ndarray  # per NIH patient
    sexes: np.ndarray
    ap_share: float  # fraction of AP views


def nih_statistics(df: pd.DataFrame) -> dict[str, Any]:
    """What the generator takes from the NIH metadata, small enough to ship in a remote kernel's bundle.

    Label-set counts (canonical spelling), the age histogram of each sex over patients (first image, ages 1-95)
    and the AP share. `_STATS` holds this for the shipped Data_Entry CSV; a test keeps the two in step.
    """
    counts: dict[str, int] = {}
    for text, count in df["Finding Labels"].value_counts(sort=False).items():
        key = "|".join(parse_labels(str(text))) or NO_FINDING
        counts[key] = counts.get(key, 0) + int(count)
    first = df.drop_duplicates("Patient ID")
    first = first[first["Patient Age"].between(1, 95)]
    ages: dict[str, dict[str, int]] = {}
    sizes = first.groupby(["Patient Gender", "Patient Age"]).size()
    for (sex, age), count in zip(sizes.index.tolist(), sizes.tolist(), strict=True):
        ages.setdefault(str(sex), {})[str(int(age))] = int(count)
    return {
        "label_set_counts": dict(sorted(counts.items())),
        "patient_ages": {sex: ages[sex] for sex in sorted(ages)},
        "ap_share": round(float((df["View Position"] == "AP").mean()), 6),
    }


@lru_cache(maxsize=1)
def _nih_tables() -> _NihTables:
    """Load the shipped NIH statistics once per process and derive the re-weighted label-set distribution."""
    with resources.files("chexvision.data").joinpath("resources", _STATS).open("rb") as fh:
        stats = json.loads(gzip.decompress(fh.read()))
    label_sets = tuple(stats["label_set_counts"])
    n = np.array([stats["label_set_counts"][s] for s in label_sets], dtype=np.float64)
    index = {name: i for i, name in enumerate(LABELS)}
    matrix = np.zeros((len(label_sets), len(LABELS)), dtype=np.float64)
    for k, s in enumerate(label_sets):
        for name in parse_labels(s):
            matrix[k, index[name]] = 1.0
    ages: list[int] = []
    sexes: list[str] = []
    for sex, histogram in stats["patient_ages"].items():
        for age, count in histogram.items():
            ages.extend([int(age)] * count)
            sexes.extend([sex] * count)
    return _NihTables(
        label_sets=label_sets,
        probs=_reweight(n, matrix),
        matrix=matrix.astype(np.float32),
        ages=np.array(ages, dtype=np.int64),
        sexes=np.array(sexes),
        ap_share=float(stats["ap_share"]),
    )


def _reweight(n: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Set probabilities: NIH counts tilted by per-class boosts (see the module docstring)."""
    abnormal = matrix.any(axis=1)
    log_beta = np.zeros(matrix.shape[1])
    target = MIN_PREVALENCE * 1.02  # a little headroom so the floor holds after the last normalisation
    probs = n / n.sum()
    for _ in range(500):
        w = n * np.exp(matrix @ log_beta)
        probs = np.where(abnormal, w / w[abnormal].sum() * (1.0 - NO_FINDING_SHARE), 0.0)
        probs[~abnormal] = n[~abnormal] / n[~abnormal].sum() * NO_FINDING_SHARE
        prevalence = probs @ matrix
        short = prevalence < target
        if not short.any():
            break
        log_beta[short] += 0.5 * np.log(target / prevalence[short])
    return probs


def label_prevalence() -> dict[str, float]:
    """Target fraction of images per class (and `No Finding`) under the re-weighted sampling."""
    t = _nih_tables()
    prevalence = t.probs @ t.matrix
    out = {name: float(p) for name, p in zip(LABELS, prevalence, strict=True)}
    out[NO_FINDING] = float(t.probs[~t.matrix.any(axis=1)].sum())
    return out


def sample_labels(n: int, seed: int) -> list[str]:
    """The label strings of the first `n` images for `seed` (no rendering); equals the labels `generate` plants."""
    return [p.labels for p in plan_images(n, seed)]


# --------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedImage:
    index: int
    filename: str
    labels: str
    patient_index: int
    patient_id: int
    age: int
    sex: str
    view: str


def plan_images(n: int, seed: int) -> list[PlannedImage]:
    """Patients, file names, labels and metadata of all images; cheap, drawn from the seed alone."""
    t = _nih_tables()
    rng = np.random.default_rng([seed, 0])
    set_idx = rng.choice(len(t.label_sets), size=n, p=t.probs)
    # at most n patients; each takes 1-4 consecutive images
    follow = rng.choice(len(FOLLOW_UPS), size=n, p=FOLLOW_UPS) + 1
    donor = rng.integers(len(t.ages), size=n)
    aging = rng.random(n)
    views = rng.random(n) < t.ap_share
    plan: list[PlannedImage] = []
    patient = 0
    follow_up = 0
    age_add = 0.0
    for i in range(n):
        if follow_up >= follow[patient]:
            patient += 1
            follow_up = 0
            age_add = 0.0
        pid = PATIENT_ID_START + patient
        plan.append(
            PlannedImage(
                index=i,
                filename=f"{pid:08d}_{follow_up:03d}.png",
                labels=t.label_sets[set_idx[i]],
                patient_index=patient,
                patient_id=pid,
                age=int(min(99, t.ages[donor[patient]] + int(age_add))),
                sex=str(t.sexes[donor[patient]]),
                view="AP" if views[i] else "PA",
            )
        )
        follow_up += 1
        age_add += aging[i]
    return plan
