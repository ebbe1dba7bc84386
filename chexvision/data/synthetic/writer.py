"""Rendering and writing the synthetic data set: `generate` yields images, `write_synthetic` writes the shards,
`bbox.csv` and `dataset.json`. Image i depends only on (seed, i), so the output does not depend on the worker count.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chexvision.data.bbox import Box, write_bbox_csv
from chexvision.data.outdir import prepare_out
from chexvision.data.synthetic.anatomy import patient_anatomy
from chexvision.data.synthetic.plan import PlannedImage, plan_images
from chexvision.data.synthetic.render import render_image
from chexvision.errors import BadInputError
from chexvision.files import write_json_atomic
from chexvision.labels import NO_FINDING, parse_labels

__all__ = ["DATASET_VERSION", "SHARD_ROWS", "SynthResult", "SynthSample", "generate", "write_synthetic"]

logger = logging.getLogger(__name__)

SHARD_ROWS = 1000  # rows per shard file
DATASET_VERSION = 1  # dataset.json "version": bump when the same seed would draw different images


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
    reused: bool = False  # the folder already held this very set: nothing was written

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able summary `chexvision data synth --json` prints."""
        return {
            "out": str(self.out),
            "images": self.images,
            "size": self.size,
            "seed": self.seed,
            "shards": [str(p) for p in self.shards],
            "bbox_csv": str(self.bbox_csv),
            "boxes": self.boxes,
            "seconds": round(self.seconds, 2),
            "label_counts": self.label_counts,
            "reused": self.reused,
        }


# --------------------------------------------------------------------------------------------- rendering


def _render(p: PlannedImage, size: int, seed: int) -> SynthSample:
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
    plan = plan_images(n, seed)
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
    overwrite: bool = False,
) -> SynthResult:
    """Write the synthetic data set: `out/data/data-NNNNN-of-MMMMM.parquet`, `out/bbox.csv`, `out/dataset.json`.

    Shards hold ~`shard_rows` rows each; `workers` processes render shards in parallel (the output does not depend
    on it). `out` follows `chexvision.data.outdir`: the same set again is nothing to do (`reused`), a killed run of
    it is written again (the same seed writes the same bytes), other parameters are refused unless `overwrite`.
    """
    from chexvision.data.shards import shard_name

    _check_args(n, size)
    if workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {workers}", "pass --workers 1 or more")
    t0 = time.perf_counter()
    out = Path(out)
    data_dir = out / "data"
    params = {"images": n, "size": size, "seed": seed, "version": DATASET_VERSION, "shard_rows": shard_rows}
    same = prepare_out(out, "synth", params, overwrite=overwrite)
    total = max(1, math.ceil(n / shard_rows))
    bounds = np.linspace(0, n, total + 1).round().astype(int)
    jobs = [
        (data_dir / shard_name("data", k, total), n, size, seed, int(bounds[k]), int(bounds[k + 1]))
        for k in range(total)
    ]
    shards = [j[0] for j in jobs]
    if same and _complete(out, shards):
        return _existing(out, n, size, seed, shards, time.perf_counter() - t0)
    (out / "dataset.json").unlink(missing_ok=True)  # absent until the set is complete
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("*.parquet"):
        if stale not in set(shards):
            stale.unlink()
    bbox_rows, counts = _write_shards(jobs, min(workers, total, os.cpu_count() or 1))
    bbox_csv = write_bbox_csv(out / "bbox.csv", bbox_rows)
    dataset_json = write_json_atomic(out / "dataset.json", _dataset_info(n, size, seed))
    seconds = time.perf_counter() - t0
    logger.info("wrote %d synthetic images in %d shards to %s in %.1f s", n, total, out, seconds)
    return SynthResult(
        out=out,
        images=n,
        size=size,
        seed=seed,
        shards=shards,
        bbox_csv=bbox_csv,
        dataset_json=dataset_json,
        boxes=len(bbox_rows),
        seconds=seconds,
        label_counts=counts,
    )


def _dataset_info(n: int, size: int, seed: int) -> dict[str, Any]:
    return {
        "source": "synthetic",
        "default_split_scheme": "patient",
        "images": n,
        "size": size,
        "seed": seed,
        "version": DATASET_VERSION,
    }


def _complete(out: Path, shards: list[Path]) -> bool:
    """Whether a finished run left every file (dataset.json is written last)."""
    return (out / "dataset.json").is_file() and (out / "bbox.csv").is_file() and all(p.is_file() for p in shards)


def _existing(out: Path, n: int, size: int, seed: int, shards: list[Path], seconds: float) -> SynthResult:
    """The result of the run that wrote this set: label counts from the plan, boxes from bbox.csv."""
    counts: dict[str, int] = {}
    for p in plan_images(n, seed):
        for name in parse_labels(p.labels) or [NO_FINDING]:
            counts[name] = counts.get(name, 0) + 1
    with (out / "bbox.csv").open(encoding="utf-8") as fh:
        boxes = max(sum(1 for line in fh if line.strip()) - 1, 0)
    return SynthResult(
        out=out,
        images=n,
        size=size,
        seed=seed,
        shards=shards,
        bbox_csv=out / "bbox.csv",
        dataset_json=out / "dataset.json",
        boxes=boxes,
        seconds=seconds,
        label_counts=counts,
        reused=True,
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
