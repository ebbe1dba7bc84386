"""Input-pipeline throughput: images/s from shard bytes to an augmented batch, against the original pipeline.

`bench_loader` measures, in one run and on the same shards, read order and batch size:

- ours: `ShardDataset` + `DataLoader` as training uses them. Mode "cpu": decode + augment in the workers.
  Mode "gpu": workers decode to uint8; the batch goes to CUDA and `GpuAugment` runs there (timed with a
  synchronise). Without CUDA, mode "gpu" measures the CPU share only (decode + uint8 batch) and says so
  (`"gpu_augment": "skipped, no CUDA"`).
- the baseline, the ORIGINAL CheXVision approach: PIL decode -> RGB -> CLAHE on the L channel of LAB (cv2)
  -> torchvision v1 transforms on PIL images, per sample (RandomHorizontalFlip, RandomRotation(15),
  RandomAffine(translate, scale, shear), ColorJitter, GaussianBlur, ToTensor, Normalize, RandomErasing).

Per-core figures: with workers=0 everything runs in this process with one torch and one OpenCV thread;
with workers=1 one worker process does the work. `images_per_cpu_second` (workers=0 only) divides by the
process CPU time instead of wall time, which is steadier on a shared machine;
`decode_only_images_per_cpu_second` is the image decode alone, the ceiling of the GPU path's CPU share.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chexvision.config import AugConfig
from chexvision.data.dataset import DropFailedCollate, ShardDataset
from chexvision.data.gpu_transforms import GpuAugment
from chexvision.data.loader import BlockShuffleSampler, resolve_mode, seed_worker
from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.data.transforms import CpuTrainTransform, resolve_clahe
from chexvision.device import resolve_device
from chexvision.errors import BadInputError, UnknownName
from chexvision.labels import label_matrix

__all__ = ["BASELINE_DESCRIPTION", "LOADER_MODES", "BaselineDataset", "bench_loader", "original_transform"]

BASELINE_DESCRIPTION = (
    "PIL decode -> RGB -> CLAHE on LAB L (cv2) -> torchvision v1 per sample: RandomHorizontalFlip, "
    "RandomRotation(15), RandomAffine(translate 0.05, scale 0.9-1.1, shear 5), ColorJitter(0.2, 0.2), "
    "GaussianBlur(3), ToTensor, Normalize(ImageNet), RandomErasing"
)
LOADER_MODES = ("cpu", "gpu", "auto")  # where augmentation runs; auto: gpu when CUDA is available
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def original_transform(cfg: AugConfig, size: int, stored_size: int | None) -> Callable[[Any], torch.Tensor]:
    """The original per-sample torchvision v1 pipeline on RGB PIL images."""
    from torchvision import transforms as T

    steps: list[Any] = [T.Resize(size)] if stored_size != size else []
    steps += [
        T.RandomHorizontalFlip(cfg.flip_p),
        T.RandomRotation(cfg.rotate_deg),
        T.RandomAffine(0, translate=(cfg.translate, cfg.translate), scale=cfg.scale, shear=cfg.shear_deg),
        T.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast),
        T.GaussianBlur(3),
        T.ToTensor(),
        T.Normalize(_IMAGENET_MEAN, _IMAGENET_STD),
        T.RandomErasing(),
    ]
    return T.Compose(steps)


class BaselineDataset(Dataset[Batch]):
    """The original loader: bytes -> PIL RGB -> CLAHE in LAB -> torchvision v1 transforms."""

    def __init__(self, index: ShardIndex, indices: np.ndarray, transform: Callable[[Any], torch.Tensor]) -> None:
        self.index, self.indices, self.transform = index, indices, transform
        self.labels14 = label_matrix([index.labels[int(i)] for i in indices])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> Batch:
        import cv2
        from PIL import Image

        k = key if isinstance(key, int) else key[0]
        data = self.index.read_image_bytes(int(self.indices[k]))
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        img = Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
        labels = torch.from_numpy(self.labels14[k])
        return self.transform(img), labels, (labels.sum() > 0).float()


def _collate(items: list[Batch]) -> Batch:
    images, labels, binary = zip(*items, strict=True)
    return torch.stack(images), torch.stack(labels), torch.stack(binary)


def _cycle(loader: DataLoader[Any]) -> Iterator[Any]:
    while True:
        yield from loader


def _measure(loader: DataLoader[Any], batches: int, warmup: int, step: Callable[[Any], int]) -> dict[str, float]:
    it = _cycle(loader)
    for _ in range(warmup):  # worker start-up and first reads are not steady state
        step(next(it))
    t0, c0, images = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        images += step(next(it))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": images, "seconds": wall, "images_per_second": images / wall, "cpu": images / max(cpu, 1e-9)}


def _loader(ds: Dataset[Any], sampler: Any, batch_size: int, workers: int, collate: Any) -> DataLoader[Any]:
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        persistent_workers=workers > 0, worker_init_fn=seed_worker, prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


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
    baseline: bool = True,
    aug: AugConfig | None = None,
) -> dict[str, Any]:
    """Measure our pipeline and the original one on `data_dir`; returns the JSON-able result."""
    import cv2

    if mode not in LOADER_MODES:
        raise UnknownName("--mode", mode, LOADER_MODES, hint="use --mode cpu, gpu or auto")
    if workers < 0 or batches < 1 or batch_size < 1 or size < 8:
        raise BadInputError(
            f"bench loader needs workers >= 0, batches >= 1, batch size >= 1, size >= 8 (got workers={workers}, "
            f"batches={batches}, batch size={batch_size}, size={size})",
            "fix the options",
        )
    aug = aug or AugConfig()
    device = resolve_device("auto")
    cuda = device.type == "cuda"
    resolved = resolve_mode(mode, device)
    index = ShardIndex.open(Path(data_dir))
    meta = read_dataset_meta(Path(data_dir))
    stored = int(meta["size"]) if "size" in meta else index.read_image(0).shape[0]
    clahe = resolve_clahe(aug.clahe, meta)
    all_rows = np.arange(len(index), dtype=np.int64)
    sampler = BlockShuffleSampler(index.row_groups(), seed=seed)
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # per-core figures; forked workers inherit it
    try:
        decode = _decode_ceiling(index)
        ours = _bench_ours(index, all_rows, sampler, resolved, aug, clahe, size, batch_size, workers, batches, warmup)
        base = None
        if baseline:
            ds = BaselineDataset(index, all_rows, original_transform(aug, size, stored))
            base = _measure(_loader(ds, sampler, batch_size, workers, _collate), batches, warmup, lambda b: len(b[0]))
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    result: dict[str, Any] = {
        "images_per_second": round(ours["images_per_second"], 1),
        "workers": workers,
        "size": size,
        "mode": resolved,
        "baseline_images_per_second": round(base["images_per_second"], 1) if base else None,
        "speedup": round(ours["images_per_second"] / base["images_per_second"], 2) if base else None,
        "images_per_cpu_second": round(ours["cpu"], 1) if workers == 0 else None,
        "baseline_images_per_cpu_second": round(base["cpu"], 1) if base and workers == 0 else None,
        "decode_only_images_per_cpu_second": round(decode, 1),
        "gpu_augment": "cuda" if resolved == "gpu" and cuda else "skipped, no CUDA" if resolved == "gpu" else "n/a",
        "clahe_at_decode": clahe,
        "batch_size": batch_size,
        "batches": batches,
        "images_timed": int(ours["images"]),
        "stored_size": stored,
        "threads_per_process": 1,
        "data": str(data_dir),
        "baseline": BASELINE_DESCRIPTION,
    }
    return result


def _decode_ceiling(index: ShardIndex, n: int = 100) -> float:
    """Images per CPU-second of the image decode alone (the bound for the GPU path's CPU share)."""
    from chexvision.data.shards import decode_image

    blobs = [index.read_image_bytes(i) for i in range(min(n, len(index)))]
    c0 = time.process_time()
    for blob in blobs:
        decode_image(blob)
    return len(blobs) / max(time.process_time() - c0, 1e-9)


def _bench_ours(
    index: ShardIndex,
    rows: np.ndarray,
    sampler: BlockShuffleSampler,
    mode: str,
    aug: AugConfig,
    clahe: bool,
    size: int,
    batch_size: int,
    workers: int,
    batches: int,
    warmup: int,
) -> dict[str, float]:
    transform = CpuTrainTransform(aug) if mode == "cpu" else None
    ds = ShardDataset(
        index, rows, size=size, output="uint8" if mode == "gpu" else "float", transform=transform, clahe=clahe,
        clahe_clip=aug.clahe_clip, clahe_grid=aug.clahe_grid,
    )  # fmt: skip
    collate = DropFailedCollate(size, torch.uint8 if mode == "gpu" else torch.float32)
    step: Callable[[Batch], int] = lambda b: len(b[0])  # noqa: E731
    if mode == "gpu" and torch.cuda.is_available():
        device, gpu_aug = resolve_device("cuda"), GpuAugment(aug)
        generator = torch.Generator(device=device).manual_seed(0)

        def step(b: Batch) -> int:
            x = gpu_aug(b[0].pin_memory().to(device, non_blocking=True), generator)
            torch.cuda.synchronize()
            return int(x.shape[0])

    return _measure(_loader(ds, sampler, batch_size, workers, collate), batches, warmup, step)
