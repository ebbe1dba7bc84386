"""DataLoader workers: pooled shared batch buffers (`WorkerBuffers`) against fresh shared memory per batch.

    python benchmarks/worker_buffers.py --data DIR [--workers 1 2] [--modes cpu gpu] [--rounds 7] [--batches 20]

The loader training uses (`ShardDataset` + `DropFailedCollate`, batch 32, the row-group block shuffle), with W
worker processes started afresh each round as `bench loader` does, in two variants interleaved (the order alternates
from round to round): "pooled", the code as it is, and "fresh", the same code with `WorkerBuffers.take` replaced
by `shared_tensor` (a new shared segment for every batch: what a worker did before the pool, and what torch's
default collate does). Each round times `--batches` batches after 2 warm-up batches: wall images/s, and CPU
microseconds per image of the main process and the workers together, start-up and warm-up included (the
workers' CPU read with `getrusage(RUSAGE_CHILDREN)` once they have exited). Checks that both variants give the same
batches. Prints one JSON line per measurement and a Markdown table of the medians on stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from chexvision.config import AugConfig
from chexvision.data.dataset import DropFailedCollate, ShardDataset, WorkerBuffers, shared_tensor
from chexvision.data.loader import BlockShuffleSampler, seed_worker
from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.data.transforms import CpuTrainTransform, resolve_clahe

POOLED_TAKE = WorkerBuffers.take


def fresh_take(self: WorkerBuffers, worker: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The worker path before the pool: fresh shared memory for every batch."""
    return shared_tensor(shape, dtype)


class Epochs:
    """`sampler`'s epochs `first`, `first + 1`, ... one after another: enough keys for any number of batches."""

    def __init__(self, sampler: BlockShuffleSampler, first: int, count: int) -> None:
        self.sampler, self.first, self.count = sampler, first, count

    def __iter__(self) -> Iterator[Any]:
        for epoch in range(self.first, self.first + self.count):
            self.sampler.set_epoch(epoch)
            yield from self.sampler

    def __len__(self) -> int:
        return len(self.sampler) * self.count


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_round(loader: DataLoader[Any], batches: int, warmup: int = 2) -> tuple[float, float, int, str]:
    """(images/s, CPU us per image of main + workers, images, a digest of the timed batches)."""
    c0, k0 = time.process_time(), children_cpu()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    images, digest = 0, 0.0
    for _ in range(batches):
        batch = next(it)
        images += len(batch[0])
        digest += float(batch[0][:, :, ::16, ::16].double().sum())
    wall = time.perf_counter() - t0
    del it  # the workers exit: their CPU time is in RUSAGE_CHILDREN from here
    cpu = time.process_time() - c0 + children_cpu() - k0
    return images / wall, cpu / (images + warmup * loader.batch_size) * 1e6, images, f"{digest:.6e}"  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["cpu", "gpu"], choices=["cpu", "gpu"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    index = ShardIndex.open(args.data)
    meta = read_dataset_meta(args.data)
    aug = AugConfig()
    size = int(meta.get("size") or index.read_image(0).shape[0])
    sampler = BlockShuffleSampler(index.row_groups(), seed=0)
    clahe = resolve_clahe(aug.clahe, meta)
    datasets = {
        "cpu": ShardDataset(index, np.arange(len(index)), size=size, transform=CpuTrainTransform(aug), clahe=clahe),
        "gpu": ShardDataset(index, np.arange(len(index)), size=size, output="uint8", clahe=clahe),
    }
    datasets = {mode: datasets[mode] for mode in args.modes}
    results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    digests: dict[tuple[str, int, str], set[str]] = {}
    for r in range(args.rounds):
        for mode, ds in datasets.items():
            collate = DropFailedCollate(size, torch.float32 if mode == "cpu" else torch.uint8)
            for workers in args.workers:
                for variant in ("pooled", "fresh") if r % 2 == 0 else ("fresh", "pooled"):
                    WorkerBuffers.take = POOLED_TAKE if variant == "pooled" else fresh_take  # type: ignore[method-assign]
                    epochs = Epochs(sampler, 100 * r, 1 + (args.batches + 2) * 32 // len(sampler))
                    loader = DataLoader(ds, batch_size=32, sampler=epochs, num_workers=workers, collate_fn=collate,
                                        worker_init_fn=seed_worker, prefetch_factor=2)  # fmt: skip
                    rate, cpu_us, images, digest = time_round(loader, args.batches)
                    WorkerBuffers.take = POOLED_TAKE  # type: ignore[method-assign]
                    key = (mode, workers, variant)
                    results.setdefault(key, []).append((rate, cpu_us))
                    digests.setdefault((mode, workers, str(r)), set()).add(digest)
                    print(json.dumps({"round": r, "mode": mode, "workers": workers, "variant": variant,
                                      "images_per_second": round(rate, 1), "cpu_us_per_image": round(cpu_us, 1),
                                      "images": images}), flush=True)  # fmt: skip
    if any(len(d) != 1 for d in digests.values()):
        raise SystemExit("the pooled and fresh variants gave different batches")
    columns = ["path", "workers", "pooled img/s", "fresh img/s", "pooled / fresh (paired)", "pooled CPU us/img",
               "fresh CPU us/img"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|", file=sys.stderr)
    for mode in args.modes:
        for workers in args.workers:
            pooled, fresh = results[(mode, workers, "pooled")], results[(mode, workers, "fresh")]
            paired = statistics.median(p[0] / f[0] for p, f in zip(pooled, fresh, strict=True))
            path = "CPU (float32 batches)" if mode == "cpu" else "GPU path, CPU share (uint8 batches)"
            print(f"| {path} | {workers} | {statistics.median(p[0] for p in pooled):,.0f} | "
                  f"{statistics.median(f[0] for f in fresh):,.0f} | {paired:.2f}x | "
                  f"{statistics.median(p[1] for p in pooled):,.0f} | {statistics.median(f[1] for f in fresh):,.0f} |",
                  file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
