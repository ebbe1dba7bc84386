"""Synthetic frontal chest X-rays with planted findings: the embedded default data set for offline runs and tests.

What is generated
    `n` images named like NIH files but with patient ids from 90000000 up (`90000123_002.png`), 1-4 follow-up
    images per patient (probabilities 0.4/0.3/0.2/0.1). Follow-ups of a patient share the body anatomy; labels,
    pose and exposure are drawn per image. Age and sex come from a random NIH patient (age grows by 0-1 year per
    follow-up), the view (PA/AP) from NIH's view frequencies. The renderer (`chexvision.data.synth_render`) plants
    each finding of the label set at a random position, size and intensity and records its box.

Label sets and their weighting
    Each image's label string is a real NIH `Finding Labels` value drawn from Data_Entry_2017_v2020.csv (package
    data), so co-occurrence patterns are NIH's. Drawn at NIH's raw frequencies, rare classes would be nearly absent
    (Hernia 0.2 %: 4 positives in 2000 images, validation AUC undefined), so the 836 distinct label sets are
    re-weighted:

    * weight(set) = count(set) * prod(beta_c for c in set) for abnormal sets, with beta_c >= 1 found by a fixed-point
      iteration so that every class reaches a prevalence of at least `MIN_PREVALENCE` (5 %);
    * `No Finding` gets `NO_FINDING_SHARE` (45 %) of the total weight.

    Within a class's boost the relative frequencies of its co-occurring sets stay NIH's. The resulting targets are
    returned by `label_prevalence()`: No Finding 45 %, Infiltration 18.8 %, Effusion 13.0 %, Atelectasis 10.9 %,
    Nodule 5.5 %, Mass 5.6 %, every other class 5.1 %.

Determinism
    Image i depends only on (seed, i) and the plan (patients, labels, metadata) drawn from the seed, so the same seed
    gives byte-identical rows whatever the number of worker processes.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.data.bbox import BBOX_HEADER, Box, write_bbox_csv
from chexvision.data.synth_anatomy import patient_anatomy
from chexvision.data.synth_render import render_image
from chexvision.errors import BadInputError
from chexvision.files import write_json_atomic
from chexvision.labels import LABELS, NO_FINDING, parse_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BBOX_HEADER",
    "MIN_PREVALENCE",
    "NO_FINDING_SHARE",
    "PATIENT_ID_START",
    "SHARD_ROWS",
    "SynthResult",
    "SynthSample",
    "generate",
    "label_prevalence",
    "sample_labels",
    "write_synthetic",
]

logger = logging.getLogger(__name__)

MIN_PREVALENCE = 0.05  # every class is positive in at least this fraction of images (target)
NO_FINDING_SHARE = 0.45  # fraction of `No Finding` images (target)
PATIENT_ID_START = 90_000_000  # synthetic patient ids never collide with NIH's (1..30805)
SHARD_ROWS = 1000  # rows per shard file
FOLLOW_UPS = (0.4, 0.3, 0.2, 0.1)  # P(1, 2, 3, 4 images per patient)
# NIH BBox_List_2017.csv header, verbatim (its rows have 6 fields, the header 9).
DATASET_VERSION = 1
# Derived from Data_Entry_2017_v2020.csv by `nih_statistics` (a few KB instead of 1 MB, so remote kernels carry it).
_STATS = "nih_synth_stats.json.gz"


@dataclass(frozen=True)
class SynthSample:
    """One generated image with its NIH-style label string, metadata and planted boxes (output pixels)."""

    filename: str
    labels: str
    image: np.ndarray  # uint8 HxW
    patient_id: int
    age: int
    sex: str
    view: str
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class SynthResult:
    """What `write_synthetic` wrote."""

    out: Path
    images: int
    size: int
    seed: int
    shards: list[Path]
    bbox_csv: Path
    dataset_json: Path
    boxes: int
    seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- label sets


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
    return [p.labels for p in _plan(n, seed)]


# --------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Planned:
    index: int
    filename: str
    labels: str
    patient_index: int
    patient_id: int
    age: int
    sex: str
    view: str


def _plan(n: int, seed: int) -> list[_Planned]:
    """Patients, file names, labels and metadata of all images; cheap, drawn from the seed alone."""
    t = _nih_tables()
    rng = np.random.default_rng([seed, 0])
    set_idx = rng.choice(len(t.label_sets), size=n, p=t.probs)
    # at most n patients; each takes 1-4 consecutive images
    follow = rng.choice(len(FOLLOW_UPS), size=n, p=FOLLOW_UPS) + 1
    donor = rng.integers(len(t.ages), size=n)
    aging = rng.random(n)
    views = rng.random(n) < t.ap_share
    plan: list[_Planned] = []
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
            _Planned(
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


# --------------------------------------------------------------------------------------------- rendering


def _render(p: _Planned, size: int, seed: int) -> SynthSample:
    patient = patient_anatomy(np.random.default_rng([seed, 2, p.patient_index]))
    rng = np.random.default_rng([seed, 1, p.index])
    rendered = render_image(frozenset(parse_labels(p.labels)), size, rng, patient)
    return SynthSample(
        filename=p.filename,
        labels=p.labels,
        image=rendered.image,
        patient_id=p.patient_id,
        age=p.age,
        sex=p.sex,
        view=p.view,
        boxes=tuple(rendered.boxes),
    )


def _check_args(n: int, size: int) -> None:
    if n < 1:
        raise BadInputError(f"--images must be at least 1, got {n}", "pass e.g. --images 2000")
    if not 32 <= size <= 2048:
        raise BadInputError(f"--size {size} is out of range", "use a size between 32 and 2048 (e.g. 64 or 320)")


def generate(n: int, size: int, seed: int, start: int = 0, stop: int | None = None) -> Iterator[SynthSample]:
    """Yield images `start..stop` (default all `n`) of the synthetic data set defined by (n, size, seed).

    An image depends only on (seed, its index, size), so any slice equals the same slice of the full sequence.
    """
    _check_args(n, size)
    plan = _plan(n, seed)
    for p in plan[start : n if stop is None else stop]:
        yield _render(p, size, seed)


# --------------------------------------------------------------------------------------------- writing


def _write_one_shard(args: tuple[Path, int, int, int, int, int]) -> tuple[list[tuple[str, Box]], dict[str, int]]:
    """Render and write shard `k`; returns its bbox rows and label counts (runs in a worker process)."""
    import cv2

    from chexvision.data.shards import ShardRow, encode_image, write_shard

    path, n, size, seed, start, stop = args
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # processes are the parallelism; OpenCV threads would oversubscribe the cores
    bbox_rows: list[tuple[str, Box]] = []
    counts: dict[str, int] = {}
    rows = []
    try:
        for s in generate(n, size, seed, start, stop):
            rows.append(ShardRow(s.filename, s.labels, encode_image(s.image), s.patient_id, s.age, s.sex, s.view))
            bbox_rows.extend((s.filename, b) for b in s.boxes)
            for name in parse_labels(s.labels) or [NO_FINDING]:
                counts[name] = counts.get(name, 0) + 1
    finally:
        cv2.setNumThreads(threads)
    write_shard(path, rows)
    return bbox_rows, counts


def write_synthetic(
    out: Path,
    n: int,
    size: int,
    seed: int,
    *,
    workers: int = 1,
    shard_rows: int = SHARD_ROWS,
) -> SynthResult:
    """Write the synthetic data set: `out/data/data-NNNNN-of-MMMMM.parquet`, `out/bbox.csv`, `out/dataset.json`.

    Shards hold ~`shard_rows` rows each; `workers` processes render shards in parallel (the output does not depend
    on it). Existing shards of an earlier run in `out/data` are replaced.
    """
    from chexvision.data.shards import shard_name

    _check_args(n, size)
    if workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {workers}", "pass --workers 1 or more")
    t0 = time.perf_counter()
    out = Path(out)
    data_dir = out / "data"
    _refuse_foreign_data(out)
    data_dir.mkdir(parents=True, exist_ok=True)
    total = max(1, math.ceil(n / shard_rows))
    bounds = np.linspace(0, n, total + 1).round().astype(int)
    jobs = [
        (data_dir / shard_name("data", k, total), n, size, seed, int(bounds[k]), int(bounds[k + 1]))
        for k in range(total)
    ]
    for stale in data_dir.glob("*.parquet"):
        if stale not in {j[0] for j in jobs}:
            stale.unlink()
    bbox_rows, counts = _write_shards(jobs, min(workers, total, os.cpu_count() or 1))
    bbox_csv = write_bbox_csv(out / "bbox.csv", bbox_rows)
    dataset_json = write_json_atomic(
        out / "dataset.json",
        {
            "source": "synthetic",
            "default_split_scheme": "patient",
            "images": n,
            "size": size,
            "seed": seed,
            "version": DATASET_VERSION,
        },
    )
    seconds = time.perf_counter() - t0
    logger.info("wrote %d synthetic images in %d shards to %s in %.1f s", n, total, out, seconds)
    return SynthResult(
        out=out,
        images=n,
        size=size,
        seed=seed,
        shards=[j[0] for j in jobs],
        bbox_csv=bbox_csv,
        dataset_json=dataset_json,
        boxes=len(bbox_rows),
        seconds=seconds,
        label_counts=counts,
    )


def _write_shards(
    jobs: list[tuple[Path, int, int, int, int, int]], workers: int
) -> tuple[list[tuple[str, Box]], dict[str, int]]:
    """Render and write every shard (in `workers` processes); returns all boxes and the label counts."""
    if workers == 1:
        results = [_write_one_shard(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_write_one_shard, jobs))
    counts: dict[str, int] = {}
    for _, c in results:
        for name, v in c.items():
            counts[name] = counts.get(name, 0) + v
    return [row for rows, _ in results for row in rows], counts


def _refuse_foreign_data(out: Path) -> None:
    """Stale shards of an earlier synthetic run are replaced; shards of any other data set are never touched."""
    if not any((out / "data").glob("*.parquet")):
        return
    try:
        source = json.loads((out / "dataset.json").read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError):
        source = None
    if source != "synthetic":
        raise BadInputError(
            f"{out} already holds Parquet shards that are not synthetic data",
            "choose an empty or new --out folder",
        )
