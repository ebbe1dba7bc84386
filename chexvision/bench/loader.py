"""Input-pipeline throughput: images/s from shard bytes to an augmented batch, against two baselines.

`bench_loader` measures, in one run and on the same shards, read order and batch size, interleaved (each round
times every pipeline once, in turn; the figures are the medians over rounds, so load on a shared machine hits
them alike):

- ours: `ShardDataset` + `DataLoader` as training uses them. Mode "cpu": decode + augment in the workers
  (`chexvision.data.transforms`). Mode "gpu": workers decode to uint8; the batch goes to CUDA and `GpuAugment`
  runs there (timed with a synchronise). Without CUDA, mode "gpu" measures the CPU share only (decode + uint8
  batch) and says so (`"gpu_augment": "skipped, no CUDA"`).
- the original pipeline, exactly (`chexvision.bench.baselines.ORIGINAL_DESCRIPTION`);
- albumentations 2.x running our augmentations in our dataset (`--no-albumentations` skips it).

Per-core figures: with workers=0 everything runs in this process with one torch and one OpenCV thread;
with workers=1 one worker process does the work. `images_per_cpu_second` (workers=0 only) divides by the
process CPU time instead of wall time, which is steadier on a shared machine;
`decode_only_images_per_cpu_second` is the image decode alone (the ceiling of any pipeline that decodes; as many
images per round as each pipeline times, with workers=0 timed a batch at a time right before each of our timed
batches), and `decode_fraction` is ours per CPU-second over it, paired within each round (median of the rounds'
ratios).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chexvision.bench.baselines import (
    ALBUMENTATIONS_DESCRIPTION,
    ORIGINAL_DESCRIPTION,
    AlbumentationsTransform,
    OriginalDataset,
)
from chexvision.config import AugConfig
from chexvision.data.dataset import DropFailedCollate, ShardDataset
from chexvision.data.gpu_transforms import GpuAugment
from chexvision.data.loader import BlockShuffleSampler, resolve_mode, seed_worker
from chexvision.data.shards import ShardIndex, decode_image, read_dataset_meta
from chexvision.data.transforms import CpuTrainTransform, resolve_clahe
from chexvision.device import resolve_device
from chexvision.errors import BadInputError, UnknownName

__all__ = ["BASELINE_DESCRIPTION", "LOADER_MODES", "bench_loader"]

BASELINE_DESCRIPTION = ORIGINAL_DESCRIPTION
LOADER_MODES = ("cpu", "gpu", "auto")  # where augmentation runs; auto: gpu when CUDA is available

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class _Pipeline:
    """One timed pipeline: a loader, what one batch costs to finish (`step`), and its per-round figures."""

    loader: DataLoader[Any]
    step: Callable[[Any], int]
    rates: list[float]
    per_cpu: list[float]
    images: int = 0  # timed, all rounds


def _collate(items: list[Batch]) -> Batch:
    images, labels, binary = zip(*items, strict=True)
    return torch.stack(images), torch.stack(labels), torch.stack(binary)


def _count(batch: Batch) -> int:
    return len(batch[0])


def _loader(ds: Dataset[Any], sampler: Any, batch_size: int, workers: int, collate: Any) -> DataLoader[Any]:
    # Not persistent: a paused pipeline's workers would keep prefetching while the next one is timed.
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        worker_init_fn=seed_worker, prefetch_factor=2 if workers else None, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


class _DecodeChunks:
    """The decode alone, timed in chunks of one batch between the batches of the pipeline it is paired with."""

    def __init__(self, blobs: list[bytes], batch_size: int) -> None:
        self.blobs, self.batch_size, self.next = blobs, batch_size, 0
        self.images, self.cpu = 0, 0.0

    def chunk(self) -> None:
        c0 = time.process_time()
        for _ in range(self.batch_size):
            decode_image(self.blobs[self.next % len(self.blobs)])
            self.next += 1
        self.cpu += time.process_time() - c0
        self.images += self.batch_size

    def rate(self) -> float:
        """Images per CPU-second so far; starts a new count."""
        rate = self.images / max(self.cpu, 1e-9)
        self.images, self.cpu = 0, 0.0
        return rate


def _time_round(pipe: _Pipeline, batches: int, warmup: int, decode: _DecodeChunks | None = None) -> None:
    """Warm up (worker start-up, first reads), then time `batches` batches; workers stop after the round.

    With `decode`, a batch's worth of decode-only work is timed right before each timed batch (on its own clock).
    """
    it = iter(pipe.loader)

    def next_batch() -> Any:
        nonlocal it
        try:
            return next(it)
        except StopIteration:  # a small data set: start the next epoch
            it = iter(pipe.loader)
            return next(it)

    for _ in range(warmup):
        pipe.step(next_batch())
    wall = cpu = 0.0
    images = 0
    for _ in range(batches):
        if decode is not None:
            decode.chunk()
        t0, c0 = time.perf_counter(), time.process_time()
        images += pipe.step(next_batch())
        wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
    del it  # shuts the round's workers down before the next pipeline is timed
    pipe.images += images
    pipe.rates.append(images / wall)
    pipe.per_cpu.append(images / max(cpu, 1e-9))


def _check(mode: str, workers: int, batches: int, batch_size: int, size: int, rounds: int) -> None:
    if mode not in LOADER_MODES:
        raise UnknownName("--mode", mode, LOADER_MODES, hint="use --mode cpu, gpu or auto")
    if workers < 0 or batches < 1 or batch_size < 1 or size < 8 or rounds < 1:
        raise BadInputError(
            f"bench loader needs workers >= 0, batches >= 1, batch size >= 1, size >= 8, rounds >= 1 (got "
            f"workers={workers}, batches={batches}, batch size={batch_size}, size={size}, rounds={rounds})",
            "fix the options",
        )


def bench_loader(
    data_dir: Path,
    *,
    workers: int = 0,
    batches: int = 20,
    batch_size: int = 32,
    mode: str = "auto",
    size: int = 320,
    seed: int = 0,
    warmup: int = 2,
    rounds: int = 3,
    baseline: bool = True,
    albumentations: bool = True,
    aug: AugConfig | None = None,
) -> dict[str, Any]:
    """Measure ours, the original pipeline and the albumentations one on `data_dir`; the JSON-able result.

    Each of `rounds` rounds times `batches` batches of every pipeline, one after the other.
    """
    import cv2

    _check(mode, workers, batches, batch_size, size, rounds)
    aug = aug or AugConfig()
    resolved = resolve_mode(mode, resolve_device("auto"))
    index = ShardIndex.open(Path(data_dir))
    meta = read_dataset_meta(Path(data_dir))
    stored = int(meta["size"]) if "size" in meta else index.read_image(0).shape[0]
    clahe = resolve_clahe(aug.clahe, meta)
    rows = np.arange(len(index), dtype=np.int64)
    sampler = BlockShuffleSampler(index.row_groups(), seed=seed)
    pipes: dict[str, _Pipeline] = {"ours": _ours(index, rows, sampler, resolved, aug, clahe, size, batch_size, workers)}
    albu_version = None
    if albumentations:
        albu = AlbumentationsTransform(aug, seed=seed)  # a missing albumentations fails here, before any timing
        albu_version = albu.version
        ds = _shard_dataset(index, rows, size, "float", albu, clahe, aug)
        collate = DropFailedCollate(size, torch.float32)
        pipes["albumentations"] = _Pipeline(_loader(ds, sampler, batch_size, workers, collate), _count, [], [])
    if baseline:
        original = OriginalDataset(index, rows, size)
        pipes["original"] = _Pipeline(_loader(original, sampler, batch_size, workers, _collate), _count, [], [])
    blobs = [index.read_image_bytes(i) for i in range(min(batches * batch_size, len(index)))]
    decode: list[float] = []
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # per-core figures; forked workers inherit it
    try:
        chunks = _DecodeChunks(blobs, batch_size)
        for _ in range(rounds):
            if workers:  # the decode in this process would compete with the workers: before the round instead
                for _ in range(batches):
                    chunks.chunk()
            for name, pipe in pipes.items():
                _time_round(pipe, batches, warmup, chunks if name == "ours" and not workers else None)
            decode.append(chunks.rate())
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    return _result(pipes, decode, data_dir=data_dir, workers=workers, size=size, mode=resolved, clahe=clahe,
                   batch_size=batch_size, batches=batches, rounds=rounds, stored=stored,
                   albu_version=albu_version, interpolation=aug.interpolation)  # fmt: skip


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _result(pipes: dict[str, _Pipeline], decode: list[float], **run: Any) -> dict[str, Any]:
    """The JSON result: medians over rounds; ratios are of the medians."""
    cuda, workers = torch.cuda.is_available(), run["workers"]
    rate = {name: _median(p.rates) for name, p in pipes.items()}
    cpu = {name: _median(p.per_cpu) for name, p in pipes.items()}
    decode_rate = _median(decode)

    def ratio(name: str) -> float | None:
        return round(rate["ours"] / rate[name], 2) if name in rate else None

    def per_cpu(name: str) -> float | None:
        return round(cpu[name], 1) if name in cpu and workers == 0 else None

    def per_second(name: str) -> float | None:
        return round(rate[name], 1) if name in rate else None

    gpu = run["mode"] == "gpu"
    version = run["albu_version"]
    return {
        "images_per_second": round(rate["ours"], 1),
        "workers": workers,
        "size": run["size"],
        "mode": run["mode"],
        "interpolation": run["interpolation"],
        "baseline_images_per_second": per_second("original"),
        "speedup": ratio("original"),
        "albumentations_images_per_second": per_second("albumentations"),
        "albumentations_speedup": ratio("albumentations"),
        "images_per_cpu_second": per_cpu("ours"),
        "baseline_images_per_cpu_second": per_cpu("original"),
        "albumentations_images_per_cpu_second": per_cpu("albumentations"),
        "decode_only_images_per_cpu_second": round(decode_rate, 1),
        # Paired per round (the decode is timed right before the pipelines of its round), then the median.
        "decode_fraction": (
            round(_median([o / d for o, d in zip(pipes["ours"].per_cpu, decode, strict=True)]), 3)
            if workers == 0
            else None
        ),
        "gpu_augment": "cuda" if gpu and cuda else "skipped, no CUDA" if gpu else "n/a",
        "clahe_at_decode": run["clahe"],
        "batch_size": run["batch_size"],
        "batches": run["batches"],
        "rounds": run["rounds"],
        "images_timed": pipes["ours"].images,
        "stored_size": run["stored"],
        "threads_per_process": 1,
        "data": str(run["data_dir"]),
        "baseline": ORIGINAL_DESCRIPTION if "original" in pipes else None,
        "albumentations": ALBUMENTATIONS_DESCRIPTION.format(version=version) if version else None,
    }


def _shard_dataset(
    index: ShardIndex, rows: np.ndarray, size: int, output: Any, transform: Any, clahe: bool, aug: AugConfig
) -> ShardDataset:
    return ShardDataset(
        index, rows, size=size, output=output, transform=transform, clahe=clahe, clahe_clip=aug.clahe_clip,
        clahe_grid=aug.clahe_grid,
    )  # fmt: skip


def _ours(
    index: ShardIndex,
    rows: np.ndarray,
    sampler: BlockShuffleSampler,
    mode: str,
    aug: AugConfig,
    clahe: bool,
    size: int,
    batch_size: int,
    workers: int,
) -> _Pipeline:
    transform = CpuTrainTransform(aug) if mode == "cpu" else None
    ds = _shard_dataset(index, rows, size, "uint8" if mode == "gpu" else "float", transform, clahe, aug)
    collate = DropFailedCollate(size, torch.uint8 if mode == "gpu" else torch.float32)
    step: Callable[[Batch], int] = _count
    if mode == "gpu" and torch.cuda.is_available():
        device, gpu_aug = resolve_device("cuda"), GpuAugment(aug)
        generator = torch.Generator(device=device).manual_seed(0)

        def step(b: Batch) -> int:
            x = gpu_aug(b[0].pin_memory().to(device, non_blocking=True), generator)
            torch.cuda.synchronize()
            return int(x.shape[0])

    return _Pipeline(_loader(ds, sampler, batch_size, workers, collate), step, [], [])
