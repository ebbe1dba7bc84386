"""Train/val/test DataLoaders over a folder of shards: `make_loaders(...) -> Loaders`.

- Splits: `chexvision.data.splits.make_split(index.filenames, scheme, seed)`, by patient from the file name,
  whatever the shard file names claim. The scheme defaults to dataset.json's `default_split_scheme`, else
  `official`.
- Two pipelines (`AugConfig.pipeline`, or the `mode` argument): "cpu" augments in the workers
  (`chexvision.data.transforms`) and batches are normalised float32; "gpu" has workers only decode and resize
  (uint8 batches, pinned) and `Loaders.batch_to_device` augments the whole batch on the device
  (`chexvision.data.gpu_transforms`). "auto" picks "gpu" on a CUDA device.
- Shuffling reads locally: Parquet's unit of reading is a row group (64 rows in our shards), and reading one
  for each random sample costs about as much as decoding the image (0.8 ms vs 1 ms per 320 px image on the
  2-core dev machine). The training sampler
  shuffles row groups, then shuffles samples within windows of `SHUFFLE_WINDOW` row groups (a shuffle buffer
  of ~500 images, as WebDataset does), so each worker's row-group cache serves almost every read.
- Distributed (`distributed=True`): every rank gets a disjoint, equally long share of each training epoch (the
  tail that does not divide evenly is dropped, like DistributedSampler(drop_last=True)); `BlockShuffleSampler`
  is a `DistributedSampler`, so `set_epoch` works as usual (or call `Loaders.set_epoch`). Validation and test
  are split into contiguous, unpadded shares (at most one sample of difference between ranks): no sample is
  duplicated, so metrics gathered over ranks (e.g. `all_gather_object`, or padding with a count) are exact.
- Bad rows never shift labels: a row whose labels are not an exact NIH string is left out of the index (warned
  about, counted in `Loaders.skipped`) and an unreadable image is left out of its batch; `strict=True` makes
  either fatal (`BadInputError` naming shard and row).
- Reproducible: training samples draw their augmentation from (seed, epoch, index), the worker seeds come from
  a seeded generator, and the GPU path draws from a device generator seeded by (seed, epoch, rank).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from chexvision.data.dataset import DropFailedCollate, ShardDataset, SkipCounter
from chexvision.data.gpu_transforms import GpuAugment, gpu_normalize
from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.data.splits import default_split_scheme, make_split
from chexvision.data.transforms import MEAN, STD, AugConfig, CpuTrainTransform, resolve_clahe
from chexvision.errors import BadInputError

__all__ = [
    "SHUFFLE_WINDOW",
    "BlockShuffleSampler",
    "ContiguousShardSampler",
    "Loaders",
    "make_loaders",
    "resolve_mode",
    "seed_worker",
]

log = logging.getLogger(__name__)

SHUFFLE_WINDOW = 8  # row groups shuffled together (64 rows each in our shards: a ~500-image shuffle buffer)
_PREFETCH = 4  # batches in flight per worker


def resolve_mode(mode: str, device: torch.device) -> str:
    """ "cpu" or "gpu" from "auto" | "cpu" | "gpu": auto augments on the GPU when the device is CUDA."""
    if mode not in ("auto", "cpu", "gpu"):
        raise BadInputError(f"unknown pipeline mode {mode!r}", "choose auto, cpu or gpu")
    if mode == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return mode


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed the global RNGs a worker's third-party code might use.

    Our own augmentation does not use them (it draws from (seed, epoch, index)); this keeps anything else
    reproducible. Not `cv2.setNumThreads` here: after fork it can deadlock on the parent's pool lock
    (observed); `make_loaders` sets it in the parent instead.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _rank_world(distributed: bool) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class BlockShuffleSampler(DistributedSampler):
    """Shuffled, row-group-local training order, yielding `(position, epoch)` keys for `ShardDataset`.

    Each epoch: row groups in random order, then samples shuffled within windows of `window` row groups;
    rank r takes the r-th contiguous share. Without `set_epoch`, each new iteration counts as the next epoch.
    """

    def __init__(
        self,
        groups: list[np.ndarray],
        *,
        seed: int,
        window: int = SHUFFLE_WINDOW,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.groups = [g for g in groups if len(g)]
        self.total = sum(len(g) for g in self.groups)
        self.window, self.seed = max(1, window), seed
        self.num_replicas, self.rank = num_replicas, rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.num_samples = self.total // num_replicas
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.drop_last = True, True
        self.epoch, self._explicit_epoch, self._iterations = 0, False, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit_epoch = epoch, True

    def order(self, epoch: int) -> np.ndarray:
        """The whole epoch's order (all ranks), as positions into the dataset."""
        rng = np.random.default_rng((self.seed, epoch))
        perm = rng.permutation(len(self.groups))
        parts = []
        for start in range(0, len(perm), self.window):
            block = np.concatenate([self.groups[g] for g in perm[start : start + self.window]])
            parts.append(rng.permutation(block))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch if self._explicit_epoch else self._iterations
        self._iterations += 1
        share = self.order(epoch)[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]
        return iter([(int(k), epoch) for k in share])

    def __len__(self) -> int:
        return self.num_samples


class ContiguousShardSampler(Sampler[int]):
    """Evaluation order: all samples in storage order, or rank r's contiguous share (no padding, no repeats)."""

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        bounds = np.linspace(0, n, num_replicas + 1).round().astype(int)
        self.start, self.stop = int(bounds[rank]), int(bounds[rank + 1])

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _positions_by_row_group(index: ShardIndex, indices: np.ndarray) -> list[np.ndarray]:
    """Dataset positions (into `indices`) grouped by the row group holding them."""
    position = np.full(len(index), -1, dtype=np.int64)
    position[indices] = np.arange(len(indices))
    groups = [position[g] for g in index.row_groups()]
    return [g[g >= 0] for g in groups]


@dataclass
class Loaders:
    """The three loaders of a data set and what the training loop needs besides them."""

    train: DataLoader[Any] | None
    val: DataLoader[Any] | None
    test: DataLoader[Any] | None
    train_labels: np.ndarray  # float32 [N_train, 14], for pos_weight
    counts: dict[str, int]  # split -> images
    split_scheme: str
    device: torch.device
    mode: str  # "cpu" | "gpu": where training augmentation runs
    clahe: bool  # whether the loader applies CLAHE at decode time
    seed: int = 0
    rank: int = 0
    gpu_augment: GpuAugment | None = None
    skip_counter: SkipCounter = field(default_factory=SkipCounter)
    mean: float = MEAN  # normalisation the batches get (eval batches on the GPU path are normalised here)
    std: float = STD
    _generator: torch.Generator | None = None

    def batch_to_device(
        self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], train: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move a batch to the device; on the GPU path also augment (train) or normalise (eval) it there."""
        images, y14, ybin = batch
        non_blocking = self.device.type == "cuda"  # pinned host memory: the copies overlap with compute
        x = images.to(self.device, non_blocking=non_blocking)
        y14 = y14.to(self.device, non_blocking=non_blocking)
        ybin = ybin.to(self.device, non_blocking=non_blocking)
        if self.mode == "gpu":
            if train and self.gpu_augment is not None:
                x = self.gpu_augment(x, self._device_generator())
            else:
                x = gpu_normalize(x, self.mean, self.std)
        return x, y14, ybin

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch for the training order and augmentation (exact resumption, distributed runs)."""
        if self.train is not None and isinstance(self.train.sampler, BlockShuffleSampler):
            self.train.sampler.set_epoch(epoch)
        self._device_generator().manual_seed(_mix(self.seed, epoch, self.rank))

    @property
    def skipped(self) -> int:
        """Samples skipped so far: rows left out for a bad label (once, when the shards were indexed) plus
        unreadable images (each time one is drawn; all workers, all loaders)."""
        return self.skip_counter.value

    def _device_generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(_mix(self.seed, 0, self.rank))
        return self._generator


def _mix(*values: int) -> int:
    return int(np.random.SeedSequence(list(values)).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_loaders(
    data_dir: Path,
    *,
    size: int,
    batch_size: int,
    split_scheme: str | None,
    seed: int,
    workers: int,
    device: torch.device,
    aug: AugConfig,
    distributed: bool = False,
    strict: bool = False,
    mode: str | None = None,
    mean: float = MEAN,
    std: float = STD,
) -> Loaders:
    """Build train/val/test loaders over the shards in `data_dir` (see the module docstring).

    `split_scheme=None` takes dataset.json's `default_split_scheme` (else "official"); `mode` overrides
    `aug.pipeline`. An empty split gives `None` instead of a loader.
    """
    index = ShardIndex.open(Path(data_dir), strict=strict)  # rows with bad labels: left out (counted) or fatal
    meta = read_dataset_meta(Path(data_dir))
    scheme = split_scheme or default_split_scheme(meta)
    split = make_split(index.filenames, scheme, seed)
    resolved = resolve_mode(mode or aug.pipeline, device)
    clahe = resolve_clahe(aug.clahe, meta)
    rank, world = _rank_world(distributed)
    if workers > 0:
        import cv2

        cv2.setNumThreads(1)  # the workers are the parallelism; forked workers inherit one cv2 thread each
    counter = SkipCounter()
    counter.add(len(index.bad_labels))
    common: dict[str, Any] = dict(
        size=size, clahe=clahe, clahe_clip=aug.clahe_clip, clahe_grid=aug.clahe_grid, strict=strict,
        seed=seed, skipped=counter, output="uint8" if resolved == "gpu" else "float", mean=mean, std=std,
    )  # fmt: skip
    collate = DropFailedCollate(size, torch.uint8 if resolved == "gpu" else torch.float32)
    generator = torch.Generator().manual_seed(seed)
    loader_kwargs: dict[str, Any] = dict(
        batch_size=batch_size, num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker, generator=generator, persistent_workers=workers > 0,
        prefetch_factor=_PREFETCH if workers > 0 else None,
    )  # fmt: skip
    train_kwargs = {**common, "transform": CpuTrainTransform(aug, mean, std) if resolved == "cpu" else None}
    eval_kwargs = {**common, "transform": None}
    where = (rank, world)
    loaders = Loaders(
        train=_split_loader(index, split["train"], train_kwargs, loader_kwargs, where, train=True),
        val=_split_loader(index, split["val"], eval_kwargs, loader_kwargs, where, train=False),
        test=_split_loader(index, split["test"], eval_kwargs, loader_kwargs, where, train=False),
        train_labels=_label_rows(index, split["train"]),
        counts={part: len(split[part]) for part in ("train", "val", "test")},
        split_scheme=scheme,
        device=device,
        mode=resolved,
        clahe=clahe,
        seed=seed,
        rank=rank,
        gpu_augment=GpuAugment(aug, mean, std) if resolved == "gpu" else None,
        skip_counter=counter,
        mean=mean,
        std=std,
    )
    log.info(
        "data %s: %s images (scheme %s), pipeline %s, clahe %s, workers %d",
        data_dir, loaders.counts, scheme, resolved, clahe, workers,
    )  # fmt: skip
    return loaders


def _split_loader(
    index: ShardIndex, indices: np.ndarray, dataset_kwargs: dict[str, Any], loader_kwargs: dict[str, Any],
    rank_world: tuple[int, int], *, train: bool,
) -> DataLoader[Any] | None:  # fmt: skip
    """One split's loader (None when the split is empty): block-shuffled for training, in storage order otherwise."""
    if len(indices) == 0:
        return None
    rank, world = rank_world
    ds = ShardDataset(index, indices, **dataset_kwargs)
    if not train:
        ordered = ContiguousShardSampler(len(ds), num_replicas=world, rank=rank)
        return DataLoader(ds, sampler=ordered, drop_last=False, **loader_kwargs)
    groups = _positions_by_row_group(index, indices)
    block = BlockShuffleSampler(groups, seed=dataset_kwargs["seed"], num_replicas=world, rank=rank)
    # Drop the ragged last batch (BatchNorm on a handful of samples), unless that leaves nothing.
    drop_last = len(block) > loader_kwargs["batch_size"]
    return DataLoader(ds, sampler=block, drop_last=drop_last, **loader_kwargs)


def _label_rows(index: ShardIndex, indices: np.ndarray) -> np.ndarray:
    """float32 [len(indices), 14] multi-hot labels of the given rows."""
    from chexvision.labels import label_matrix

    return label_matrix([index.labels[int(i)] for i in indices])
