"""Map-style Dataset over a `ShardIndex`: decode, resize, optional CLAHE, and (CPU path) augment in the worker.

An item is `(image, labels14, binary)`: image uint8 [1,H,W] for the GPU path (augmented on the device later)
or normalised float32 [1,H,W] for the CPU path; labels14 float32 [14]; binary float32 [] (0 = No Finding).

Unreadable images never shift labels: `__getitem__` returns `None` for them (after a warning naming the shard
file and row, and a bump of a counter shared by all workers), and `DropFailedCollate` leaves them out of the
batch, so every label in a batch still belongs to its own image. With `strict=True` the first one raises
`BadInputError` instead. A `None` that reaches torch's default collate fails loudly, never silently.

Sample keys are plain indices (evaluation) or `(index, epoch)` pairs from the training samplers: each training
sample's augmentation draws from `default_rng((seed, epoch, index))`, so the augmentation of an epoch is the
same whatever the number of workers, their persistence or the batch order (exact resumption, reproducible runs).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from chexvision.data.eval_transform import EvalTransform
from chexvision.data.shards import ShardIndex, decode_image
from chexvision.data.transforms import MEAN, STD, CpuTrainTransform
from chexvision.errors import BadInputError
from chexvision.labels import label_matrix

__all__ = ["DropFailedCollate", "Item", "ShardDataset", "SkipCounter"]

log = logging.getLogger(__name__)

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Output = Literal["uint8", "float"]


class SkipCounter:
    """Count of skipped (unreadable) samples, shared between the main process and DataLoader workers.

    Counts skip events: an image that stays unreadable is counted again in every epoch that draws it.
    """

    def __init__(self) -> None:
        self._value = mp.get_context().Value("q", 0)

    def add(self, n: int = 1) -> None:
        with self._value.get_lock():
            self._value.value += n

    @property
    def value(self) -> int:
        return int(self._value.value)


class ShardDataset(Dataset[Item | None]):
    """Images `indices` of a ShardIndex, resized to `size`, as uint8 (GPU path) or augmented float (CPU path).

    `transform` (CPU path training only) maps a uint8 HxW image and an rng to a normalised float32 image;
    without it, `output="float"` gives the eval transform (`EvalTransform`: resize, CLAHE when asked, normalise).
    """

    def __init__(
        self,
        index: ShardIndex,
        indices: np.ndarray,
        *,
        size: int,
        output: Output = "float",
        transform: CpuTrainTransform | None = None,
        clahe: bool = False,
        clahe_clip: float = 2.0,
        clahe_grid: int = 8,
        mean: float = MEAN,
        std: float = STD,
        strict: bool = False,
        seed: int = 0,
        skipped: SkipCounter | None = None,
    ) -> None:
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        self.index = index
        self.indices = np.asarray(indices, dtype=np.int64)
        self.size, self.output, self.transform = size, output, transform
        self.clahe, self.clahe_clip, self.clahe_grid = clahe, clahe_clip, clahe_grid
        self.mean, self.std = mean, std
        self.prep = EvalTransform(size, mean, std, clahe, clahe_clip, clahe_grid)
        self.strict, self.seed = strict, seed
        self._stream: np.random.Generator | None = None
        self.skipped = skipped if skipped is not None else SkipCounter()
        self.labels14 = label_matrix([index.labels[i] for i in self.indices])
        self.binary = (self.labels14.sum(axis=1) > 0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> Item | None:
        k, epoch = (key, None) if isinstance(key, int | np.integer) else key
        img = self.load_image(int(k))
        if img is None:
            return None
        if self.output == "uint8":
            out = img
        elif self.transform is not None:
            out = self.transform(img, self._rng(k, epoch))
        else:
            out = self.prep.normalize(img)
        return (
            torch.from_numpy(out).unsqueeze(0),
            torch.from_numpy(self.labels14[k]),
            torch.tensor(self.binary[k]),
        )

    def _rng(self, k: int, epoch: int | None) -> np.random.Generator:
        if epoch is not None:
            return np.random.default_rng((self.seed, int(epoch), int(self.indices[k])))
        # A plain index (a sampler other than ours): a per-process stream, so epochs still differ.
        if self._stream is None:
            self._stream = np.random.default_rng((self.seed, torch.initial_seed()))
        return self._stream

    def load_image(self, k: int) -> np.ndarray | None:
        """Decoded, resized (and CLAHE'd when asked) uint8 image of sample `k`; None when unreadable."""
        i = int(self.indices[k])
        try:
            return self.prep.resized(decode_image(self.index.read_image_bytes(i)))
        except (ValueError, OSError, cv2.error) as exc:  # ImageDecodeError and pyarrow errors are ValueError/OSError
            self._report(i, exc)
            return None

    def _report(self, i: int, exc: Exception) -> None:
        shard, row = self.index.shard_of(i)
        where = f"{shard} row {row} ({self.index.filenames[i]})"
        if self.strict:
            raise BadInputError(
                f"unreadable image in {where}: {exc}",
                "rebuild or re-download that shard, or train without --strict to skip unreadable images",
            ) from exc
        self.skipped.add()
        log.warning("skipping unreadable image in %s: %s", where, exc)


class DropFailedCollate:
    """Collate `(image, labels14, binary)` items into a batch, leaving out failed (`None`) samples.

    A batch whose samples all failed comes out empty (batch dimension 0) with the right trailing shapes.
    """

    def __init__(self, size: int, dtype: torch.dtype) -> None:
        self.size, self.dtype = size, dtype

    def __call__(self, items: list[Item | None]) -> Item:
        good = [item for item in items if item is not None]
        if not good:
            return (
                torch.empty((0, 1, self.size, self.size), dtype=self.dtype),
                torch.empty((0, 14), dtype=torch.float32),
                torch.empty((0,), dtype=torch.float32),
            )
        images, labels, binary = zip(*good, strict=True)
        return torch.stack(images), torch.stack(labels), torch.stack(binary)
