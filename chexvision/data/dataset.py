"""Map-style Dataset over a `ShardIndex`: decode, resize, optional CLAHE, and (CPU path) augment in the worker.

An item is `(image, labels14, binary)`: image uint8 [1,H,W] for the GPU path (augmented on the device later)
or normalised float32 [1,H,W] for the CPU path; labels14 float32 [14]; binary float32 [] (0 = No Finding).

Unreadable images never shift labels: `__getitem__` returns `None` for them (after a warning naming the shard
file and row, and a bump of a counter shared by all workers), and `DropFailedCollate` leaves them out of the
batch, so every label in a batch still belongs to its own image. With `strict=True` the first one raises
`BadInputError` instead. A `None` that reaches torch's default collate fails loudly, never silently.

Sample keys are plain indices (evaluation) or `(index, epoch)` pairs from the training samplers: each training
sample's augmentation draws from uniforms that are a pure function of (seed, epoch, index)
(`chexvision.data.transforms.sample_uniforms`), so the augmentation of an epoch is the same whatever the number
of workers, their persistence or the batch order (exact resumption, reproducible runs).

Batches are fetched whole (`__getitems__`, which DataLoader calls with batched sampling): every image is written
straight into one [n, 1, H, W] batch buffer (shared memory inside a worker, as torch's default collate
allocates it) and `DropFailedCollate` hands that buffer on instead of stacking copies of per-item tensors.
The buffers are reused once nothing refers to a batch any more (`BatchBuffers`; a fresh buffer per batch costs its
page faults every time): in the main process (`num_workers=0`) once no tensor, view or array of it is left; in a
worker once the main process has dropped it (`WorkerBuffers`: a lease per buffer, freed by a finalizer in the
main process).

`ChestXrayDataset(folder, split="train")` is the same dataset for a plain PyTorch loop: it opens the shards,
splits them by patient as training does (dataset.json's default scheme), and pairs with `collate` (or
`dataset.loader(batch_size=...)`, a DataLoader that already uses it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing as mp
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chexvision.data.eval_transform import EvalTransform
from chexvision.data.shards import ShardIndex, decode_image, read_dataset_meta
from chexvision.data.transforms import MEAN, N_UNIFORMS, STD, CpuTrainTransform, resolve_clahe, sample_uniforms
from chexvision.errors import BadInputError
from chexvision.labels import LABELS, label_matrix

__all__ = [
    "BatchBuffers",
    "ChestXrayDataset",
    "DropFailedCollate",
    "Item",
    "ShardDataset",
    "SkipCounter",
    "collate",
    "shared_tensor",
]

log = logging.getLogger(__name__)

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Output = Literal["uint8", "float"]


class SkipCounter:
    """Count of skipped (unreadable) samples, shared between the main process and DataLoader workers.

    Counts skip events: an image that stays unreadable is counted again in every epoch that draws it.
    """

    def __init__(self) -> None:
        self._value = mp.get_context("spawn").Value("q", 0)  # spawn: usable by forked and spawned workers alike

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
        self._buffers = BatchBuffers()
        self.skipped = skipped if skipped is not None else SkipCounter()
        self.labels14 = label_matrix([index.labels[i] for i in self.indices])
        self.binary = (self.labels14.sum(axis=1) > 0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> Item | None:
        return self.__getitems__([key])[0]  # one item is a batch of one: one code path, the same draws

    def __getitems__(self, keys: list[Any]) -> list[Item | None]:
        """A whole batch at once (DataLoader calls this for batched sampling): the items' tensors are views of
        one [n, 1, H, W] buffer (in shared memory inside a worker) that each image is written into, so
        `DropFailedCollate` hands the buffer on instead of stacking copies. The images are decoded first, then
        the CPU path augments them together (`CpuTrainTransform.apply_batch`: parameters, matrices and LUTs
        for the batch in a few vectorised steps); each training sample draws its augmentation from its own
        (seed, epoch, index) uniforms, as one item would."""
        ks, epochs = _split_keys(keys)
        n = len(ks)
        images = self._buffers.take((n, 1, self.size, self.size), np.uint8 if self.output == "uint8" else np.float32)
        slots = images.numpy()[:, 0]
        views = zip(images.unbind(0), torch.from_numpy(self.labels14[ks]).unbind(0),
                    torch.from_numpy(self.binary[ks]).unbind(0), strict=True)  # fmt: skip
        imgs = [self.load_image(k) for k in ks.tolist()]
        if self.output == "float" and isinstance(self.transform, CpuTrainTransform):
            self.transform.apply_batch(imgs, self._uniforms(ks, epochs), out=slots)  # the whole batch at once
        else:
            for j, (k, img) in enumerate(zip(ks.tolist(), imgs, strict=True)):
                if img is None:
                    continue
                if self.output == "uint8":
                    slots[j] = img
                elif self.transform is None:
                    self.prep.normalize(img, out=slots[j])
                else:  # another transform (a baseline's): its own draws, our buffer
                    slots[j] = self.transform(img, self._other_rng(k, None if epochs is None else int(epochs[j])))
        if all(img is None for img in imgs):
            release_unsent(images)  # nothing of it is handed on
        return [item if img is not None else None for img, item in zip(imgs, views, strict=True)]

    def _uniforms(self, ks: np.ndarray, epochs: np.ndarray | None) -> np.ndarray:
        if epochs is not None:
            return sample_uniforms(self.seed, epochs, self.indices[ks])
        return self._stream_rng().random((len(ks), N_UNIFORMS))

    def _other_rng(self, k: int, epoch: int | None) -> np.random.Generator:
        """The generator a transform other than ours gets: per sample (seed, epoch, index), unless the transform
        says it draws from its own (`draws_own_randomness`, the albumentations baseline): then it is not built."""
        if epoch is None or getattr(self.transform, "draws_own_randomness", False):
            return self._stream_rng()
        return np.random.default_rng((self.seed, int(epoch), int(self.indices[k])))

    def _stream_rng(self) -> np.random.Generator:
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

    A batch whose samples all failed comes out empty (batch dimension 0) with the right trailing shapes; without
    `size` (the module's default `collate`) its images are [0, 1, 0, 0].
    """

    def __init__(self, size: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.size, self.dtype = size, dtype

    def __call__(self, items: list[Item | None]) -> Item:
        good = [item for item in items if item is not None]
        if not good:
            side = self.size or 0
            return (
                torch.empty((0, 1, side, side), dtype=self.dtype),
                torch.empty((0, 14), dtype=torch.float32),
                torch.empty((0,), dtype=torch.float32),
            )
        images, labels, binary = zip(*good, strict=True)
        return _stacked(images), _stacked(labels), _stacked(binary)


def _stacked(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`torch.stack(tensors)`, or without a copy the tensor they are the rows of: `ShardDataset.__getitems__`
    returns each batch's images, labels and flags as `unbind(0)` views of one tensor when no sample failed."""
    base = tensors[0]._base
    if base is not None and base.dim() > 0 and len(base) == len(tensors) and base.is_contiguous():
        step, start = base[0].numel() * base.element_size(), base.data_ptr()
        if all(t._base is base and t.data_ptr() == start + j * step for j, t in enumerate(tensors)):
            return base
    stacked = torch.stack(tensors)
    for t in tensors:  # copied: a pooled worker buffer they are rows of is not sent
        if t._base is not None:
            release_unsent(t._base)
    return stacked


def _split_keys(keys: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Sample positions, and their epochs when the keys are our samplers' `(index, epoch)` pairs."""
    if keys and not isinstance(keys[0], int | np.integer):
        pairs = np.asarray(keys, dtype=np.int64).reshape(len(keys), 2)
        return pairs[:, 0], pairs[:, 1]
    return np.asarray(keys, dtype=np.int64), None


def _refcount(array: np.ndarray) -> int:
    return sys.getrefcount(array)


def _unused_refcount() -> int:
    """What `_refcount` says of a pooled array that nothing else refers to: counted the same way as
    `BatchBuffers.take` counts (a list holding it, a loop variable), so the interpreter's own references
    (which differ between Python versions) are the same in both counts."""
    arrays = [np.empty(0)]
    for array in arrays:
        return _refcount(array)
    raise AssertionError


_UNUSED = _unused_refcount()


def shared_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A new uninitialised tensor in shared memory (a base tensor, not a view), as a DataLoader worker's batch."""
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=dtype).new(storage).resize_(shape)


_SLOTS_PER_WORKER = 8  # pooled shared batch buffers per DataLoader worker (training has 4 batches in flight per worker)
_MAX_WORKERS = 32  # workers with pooled buffers; more get fresh shared memory for every batch
_COUNTER = _MAX_WORKERS * _SLOTS_PER_WORKER  # the lease table's last entry: the last lease number given out
_POOLS: dict[int, Any] = {}  # pool token -> its lease table, in every process that knows the pool
_OUT: dict[int, tuple[int, int, int]] = {}  # in a worker: data_ptr of a pooled buffer out on lease -> its lease
_LOCK_TIMEOUT = 1.0  # seconds: a worker killed inside the table's lock (microseconds a batch) must not hang anyone


class WorkerBuffers:
    """Shared-memory batch buffers for DataLoader workers, each reused once the main process has let go of it.

    A fresh shared segment per batch costs ~15 ms per 13 MB float32 batch on the dev box (torch fallocates it,
    its pages fault in, it is freed again): ~480 us per 320 px image, more than the whole augmentation
    (BENCHMARKS.md). So a worker keeps up to `_SLOTS_PER_WORKER` buffers, allocated as needed (at most as many
    as it has batches out at once). The lease table `leases` (shared memory, like `SkipCounter`'s) holds, per
    slot, the number of the lease out on it, 0 when free; worker k owns slots [8 k, 8 k + 8). A worker writes
    only into a buffer whose slot is free, and marks it out with a new lease number first. When the batch is
    pickled to the main process, the buffer's storage carries its lease (`_reduce_storage`, this process's
    reducer for `torch.UntypedStorage`, whichever collate sent it); unpickled there, `_rebuild_leased` hangs a
    finalizer on the storage, which frees the slot (if it still holds that lease) once no tensor, view or numpy
    array of it is left in the main process (torch keeps a storage's Python object alive exactly as long as the
    storage). A buffer that was not sent (the collate stacked copies: a batch with failed samples; or no sample
    was readable) is freed by `DropFailedCollate` / `__getitems__` (`release_unsent`); one a foreign collate
    copied stays out, and when all of a worker's slots are out it gets fresh shared memory, what torch's
    default collate does for every batch. Pickled (a spawned worker) with the table, without buffers.
    """

    def __init__(self) -> None:
        self.token = int.from_bytes(os.urandom(8), "little") >> 1
        self.leases = mp.get_context("spawn").Array("q", _COUNTER + 1)  # like SkipCounter
        self.mine: dict[int, torch.Tensor] = {}  # this process's buffers, by slot
        _POOLS[self.token] = self.leases

    def __getstate__(self) -> dict[str, Any]:
        return {"token": self.token, "leases": self.leases}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.token, self.leases, self.mine = state["token"], state["leases"], {}
        _POOLS[self.token] = self.leases

    def take(self, worker: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Worker `worker`'s uninitialised batch tensor in shared memory, out on a new lease (or, every slot out,
        fresh shared memory)."""
        first = worker * _SLOTS_PER_WORKER
        slots = range(first, first + _SLOTS_PER_WORKER) if worker < _MAX_WORKERS else range(0)
        with _locked(self.leases) as table:
            free = [slot for slot in slots if table is not None and table[slot] == 0]
            fits = [s for s in free if s in self.mine and self.mine[s].shape == shape and self.mine[s].dtype == dtype]
            empty = [slot for slot in free if slot not in self.mine]
            if table is None or not free:
                return shared_tensor(shape, dtype)  # every slot out (or the table unreachable): fresh memory
            slot = (fits or empty or free)[0]  # a free buffer of this shape, a slot without one, another shape's
            number = int(table[_COUNTER]) + 1
            table[_COUNTER] = table[slot] = number
        if not fits:
            self.mine[slot] = shared_tensor(shape, dtype)  # allocated outside the lock: it takes milliseconds
        buffer = self.mine[slot]
        _OUT[buffer.data_ptr()] = (self.token, slot, number)
        _install_reducer()
        return buffer


def _release(token: int, slot: int, number: int) -> None:
    """Free `slot` of pool `token` if lease `number` is still the one out on it. Without the lock (a worker died
    holding it) the slot stays out: never reused, and nothing waits."""
    leases = _POOLS.get(token)
    if leases is not None:
        with _locked(leases) as table:
            if table is not None and table[slot] == number:
                table[slot] = 0


@contextlib.contextmanager
def _locked(leases: Any) -> Iterator[Any]:
    """The lease table's entries while holding its lock; None if the lock was not free within `_LOCK_TIMEOUT`."""
    lock = leases.get_lock()
    if not lock.acquire(timeout=_LOCK_TIMEOUT):
        yield None
        return
    try:
        yield leases.get_obj()
    finally:
        lock.release()


def release_unsent(tensor: torch.Tensor) -> None:
    """Free the lease of a pooled worker buffer that will not be sent (its rows were copied, or none was good).
    Anything else: nothing."""
    lease = _OUT.pop(tensor.data_ptr(), None)
    if lease is not None:
        _release(*lease)


@functools.cache
def _install_reducer() -> None:
    """Make this process (a DataLoader worker) pickle pooled storages with their lease, once; torch's reducer does
    the rest, as before."""
    from multiprocessing.reduction import ForkingPickler

    from torch.multiprocessing.reductions import reduce_storage

    ForkingPickler.register(torch.UntypedStorage, functools.partial(_reduce_storage, reduce_storage))


def _reduce_storage(torch_reduce: Callable[[Any], tuple[Any, ...]], storage: torch.UntypedStorage) -> tuple[Any, ...]:
    rebuild, args = torch_reduce(storage)
    lease = _OUT.pop(storage.data_ptr(), None)
    return (rebuild, args) if lease is None else (_rebuild_leased, (rebuild, args, *lease))


def _rebuild_leased(rebuild: Callable[..., Any], args: tuple[Any, ...], token: int, slot: int, number: int) -> Any:
    """Unpickling a pooled buffer's storage (in the main process): torch's rebuild, then the lease is freed when
    that storage dies."""
    storage = rebuild(*args)
    if token in _POOLS:
        weakref.finalize(storage, _release, token, slot, number).atexit = False
    return storage


class BatchBuffers:
    """Batch buffers of one process: handed out as tensors, reused once nothing refers to them any more.

    A buffer goes out as `torch.from_numpy(array)`; the tensor's storage holds a reference to `array`, so every
    tensor, view or numpy array made from the batch keeps it referenced, and the array is free exactly when its
    reference count is back to `_UNUSED`. Up to `keep` buffers are kept. Inside a DataLoader worker a batch must
    be in shared memory to reach the main process, whose use of it the worker cannot see: `WorkerBuffers` (`shared`)
    lends those. Pickled (a spawned worker's copy of the dataset) without its buffers. Thread-safe.
    """

    def __init__(self, keep: int = 3, shared: WorkerBuffers | None = None) -> None:
        self.keep = keep
        self.arrays: list[np.ndarray] = []
        self._lock = threading.Lock()  # two threads never get the same free buffer
        self.shared = shared if shared is not None else WorkerBuffers()

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.keep, "shared": self.shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keep"], state["shared"])  # type: ignore[misc]

    def take(self, shape: tuple[int, ...], dtype: type[np.uint8] | type[np.float32]) -> torch.Tensor:
        """An uninitialised batch tensor of `shape` and `dtype` (a base tensor, not a view: `_stacked`)."""
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            return self.shared.take(worker.id, shape, torch.uint8 if dtype == np.uint8 else torch.float32)
        with self._lock:
            for array in self.arrays:
                if array.shape == shape and array.dtype == dtype and _refcount(array) == _UNUSED:
                    return torch.from_numpy(array)
            array = np.empty(shape, dtype=dtype)
            self.arrays = [*self.arrays[1 - self.keep :], array] if self.keep > 1 else [array]
            return torch.from_numpy(array)


collate = DropFailedCollate()  # the default collate: float32 batches, failed samples left out


class ChestXrayDataset(ShardDataset):
    """One split of a data folder (`chexvision data build | synth | download`), ready for a DataLoader.

    Items are `(image [1, S, S] float32 normalised, labels14 [14] float32, abnormal [] float32)`; the 14 columns
    follow `dataset.labels`. `size` defaults to the folder's image size (dataset.json), `split_scheme` to its
    default scheme; the split is the patient-disjoint one training makes from (scheme, seed). `augment=True`
    gives training's CPU augmentation (`chexvision.config.AugConfig` defaults). CLAHE follows the loader's rule
    (`clahe="auto"`: real X-rays get it unless the shards already have it; synthetic ones never).

        from torch.utils.data import DataLoader
        from chexvision.data import ChestXrayDataset, collate

        train = ChestXrayDataset("data/nih", split="train")
        for images, labels, abnormal in DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate):
            ...
    """

    labels: tuple[str, ...] = LABELS

    def __init__(
        self,
        folder: str | Path,
        split: str = "train",
        *,
        size: int | None = None,
        split_scheme: str | None = None,
        seed: int = 0,
        augment: bool = False,
        clahe: str = "auto",
        strict: bool = False,
    ) -> None:
        from chexvision.config import AugConfig
        from chexvision.data.splits import default_split_scheme, make_split

        folder = Path(folder).expanduser()
        index = ShardIndex.open(folder, strict=strict)
        meta = read_dataset_meta(folder)
        if split not in ("train", "val", "test", "all"):
            raise BadInputError(f"unknown split {split!r}", "choose train, val, test or all")
        self.split_scheme = split_scheme or default_split_scheme(meta)
        indices = (
            np.arange(len(index)) if split == "all" else make_split(index.filenames, self.split_scheme, seed)[split]
        )
        side = int(size or meta.get("size") or 224)
        aug = AugConfig(clahe=clahe)
        super().__init__(
            index, indices, size=side, output="float", strict=strict, seed=seed, clahe=resolve_clahe(clahe, meta),
            clahe_clip=aug.clahe_clip, clahe_grid=aug.clahe_grid, transform=CpuTrainTransform(aug) if augment else None,
        )  # fmt: skip
        self.split = split

    @property
    def filenames(self) -> list[str]:
        """The image names of this split, in item order."""
        return [self.index.filenames[i] for i in self.indices]

    def loader(self, batch_size: int = 32, *, shuffle: bool | None = None, **kwargs: Any) -> DataLoader[Item | None]:
        """A DataLoader over this split with `collate` (shuffled for the training split unless told)."""
        kwargs.setdefault("collate_fn", DropFailedCollate(self.size, torch.float32))
        return DataLoader(self, batch_size=batch_size, shuffle=self.split == "train" if shuffle is None else shuffle,
                          **kwargs)  # fmt: skip
