"""The loader's batched fetch: `ShardDataset.__getitems__` writes a batch into one buffer, the collate hands it on.

Same items as one-at-a-time `__getitem__` (train keys with their epoch, eval keys, the GPU path's uint8), no copy
in the collate when nothing failed, a real copy whenever the views are not the buffer's rows in order, a worker
process (shared-memory buffer) giving the same batches as the main process, and the main process's batch buffers
reused only once nothing refers to a batch.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from chexvision.config import AugConfig
from chexvision.data import dataset as dataset_module
from chexvision.data.dataset import BatchBuffers, DropFailedCollate, Item, ShardDataset
from chexvision.data.loader import BlockShuffleSampler
from chexvision.data.shards import ShardIndex, ShardRow, decode_image, encode_png, write_shard
from chexvision.data.transforms import CpuTrainTransform, sample_uniforms
from chexvision.labels import is_abnormal, labels_to_vector

STORED, SIZE = 40, 32
LABELS = ["No Finding", "Effusion", "Cardiomegaly|Effusion", "Mass|Nodule"]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ShardIndex:
    root = tmp_path_factory.mktemp("batched")
    rng = np.random.default_rng(0)
    rows = [
        ShardRow(
            filename=f"{90000000 + k // 2:08d}_{k % 2:03d}.png",
            labels=LABELS[k % len(LABELS)],
            image=b"not an image" if k == 13 else encode_png(rng.integers(0, 256, (STORED, STORED), dtype=np.uint8)),
        )
        for k in range(24)
    ]
    write_shard(root / "data" / "data-00000-of-00001.parquet", rows, row_group_size=8)
    (root / "dataset.json").write_text(json.dumps({"source": "synthetic", "default_split_scheme": "patient"}))
    return ShardIndex.open(root)


def _dataset(index: ShardIndex, output: str = "float", augment: bool = True) -> ShardDataset:
    transform = CpuTrainTransform(AugConfig(blur_p=0.5, erase_p=0.5)) if augment and output == "float" else None
    return ShardDataset(index, np.arange(len(index)), size=SIZE, output=output, transform=transform, seed=3)  # type: ignore[arg-type]


def _one_at_a_time(ds: ShardDataset, key: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What one sample should be, from its parts: decode + resize, then the eval transform or our augmentation
    with that sample's own (seed, epoch, index) draws, or nothing (uint8); its labels from its label string."""
    k, epoch = key if isinstance(key, tuple) else (key, None)
    i = int(ds.indices[k])
    img = ds.prep.resized(decode_image(ds.index.read_image_bytes(i)))
    if ds.output == "uint8":
        image = img
    elif isinstance(ds.transform, CpuTrainTransform):
        image = ds.transform.apply(img, sample_uniforms(ds.seed, epoch, np.array([i]))[0])
    else:
        image = ds.prep(img)[0]
    text = ds.index.labels[i]
    return (
        torch.from_numpy(image).unsqueeze(0),
        torch.from_numpy(labels_to_vector(text).astype(np.float32)),
        torch.tensor(float(is_abnormal(text))),
    )


@pytest.mark.parametrize(
    ("output", "augment", "keys"),
    [
        ("float", True, [(k, 2) for k in (5, 0, 7, 3)]),  # training: (index, epoch) keys, augmented
        ("float", False, [5, 0, 7, 3]),  # evaluation: normalised only
        ("uint8", False, [(k, 1) for k in (5, 0, 7, 3)]),  # the GPU path: decoded and resized only
    ],
    ids=["train", "eval", "gpu_path"],
)
def test_a_batch_is_the_items_one_at_a_time_without_a_copy(
    index: ShardIndex, output: str, augment: bool, keys: list[object]
) -> None:
    ds = _dataset(index, output, augment)
    batch = ds.__getitems__(keys)
    single = [_one_at_a_time(ds, key) for key in keys]
    for got, want in zip(batch, single, strict=True):
        assert got is not None and want is not None
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    images, labels, binary = DropFailedCollate(SIZE, batch[0][0].dtype)(batch)  # type: ignore[index]
    assert images.shape == (4, 1, SIZE, SIZE) and labels.shape == (4, 14) and binary.shape == (4,)
    assert images.data_ptr() == batch[0][0].data_ptr()  # type: ignore[index]  # the buffer itself, not a stack
    assert images.dtype == (torch.uint8 if output == "uint8" else torch.float32)


def test_a_failed_sample_is_left_out_and_the_rest_copied_in_order(index: ShardIndex) -> None:
    ds = _dataset(index)
    keys = [(k, 0) for k in (12, 13, 14)]  # 13 is not an image
    batch = ds.__getitems__(keys)
    assert batch[1] is None
    images, labels, _ = DropFailedCollate(SIZE)(batch)
    assert len(images) == 2
    torch.testing.assert_close(images[1], ds[(14, 0)][0], atol=0, rtol=0)  # type: ignore[index]
    torch.testing.assert_close(labels[1], ds[(14, 0)][1], atol=0, rtol=0)  # type: ignore[index]


def test_views_out_of_order_or_of_a_larger_tensor_are_stacked(index: ShardIndex) -> None:
    collate = DropFailedCollate(SIZE)
    batch: list[Item | None] = list(_dataset(index).__getitems__([(k, 0) for k in (1, 2, 3)]))
    reordered = collate(batch[::-1])
    images = [item[0] for item in batch if item is not None]
    torch.testing.assert_close(reordered[0], torch.stack(images[::-1]), atol=0, rtol=0)
    assert reordered[0].data_ptr() != images[0].data_ptr()
    partial = collate(batch[:2])  # the first two rows of a three-row buffer: a copy, two rows
    assert partial[0].shape[0] == 2 and partial[0].data_ptr() != images[0].data_ptr()


def test_a_worker_process_gives_the_same_batches(index: ShardIndex) -> None:
    ds = _dataset(index)
    sampler = BlockShuffleSampler(index.row_groups(), seed=0)

    def batches(workers: int) -> list[torch.Tensor]:
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=5, sampler=sampler, num_workers=workers, collate_fn=DropFailedCollate(SIZE))
        return [torch.cat([b[0].flatten(1), b[1]], dim=1) for b in loader]

    main, worker = batches(0), batches(1)
    assert len(main) == len(worker) == 5 and sum(len(b) for b in main) == 23  # one unreadable image left out
    for a, b in zip(main, worker, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_batch_buffer_is_reused_only_once_nothing_refers_to_it() -> None:
    buffers, shape = BatchBuffers(), (4, 1, 2, 2)
    first = buffers.take(shape, np.float32)
    address = first.data_ptr()
    assert buffers.take(shape, np.float32).data_ptr() != address  # the batch is alive
    del first
    again = buffers.take(shape, np.float32)
    assert again.data_ptr() == address  # released: reused
    holders = {
        "a row view": lambda t: t[1],
        "the unbind views": lambda t: t.unbind(0),
        "a numpy array of it": lambda t: t.numpy(),
        "a reshaped view": lambda t: t.view(4, 4),
        "its storage": lambda t: t.untyped_storage(),
    }
    for name, hold in holders.items():
        held = hold(again)
        del again
        assert buffers.take(shape, np.float32).data_ptr() != address, name
        del held
        again = buffers.take(shape, np.float32)
        assert again.data_ptr() == address, name
    assert buffers.take(shape, np.uint8).dtype == torch.uint8  # another dtype: its own buffer
    assert len(buffers.arrays) <= buffers.keep


def test_batches_kept_by_the_caller_are_never_overwritten(index: ShardIndex) -> None:
    ds = _dataset(index)
    keys = [[(k, epoch) for k in range(start, start + 4)] for epoch in (0, 1) for start in (0, 4, 8, 16)]
    kept = [ds.__getitems__(batch_keys) for batch_keys in keys]  # eight batches alive at once
    assert len({batch[0][0].data_ptr() for batch in kept}) == len(keys)  # type: ignore[index]
    for batch, batch_keys in zip(kept, keys, strict=True):
        for got, key in zip(batch, batch_keys, strict=True):
            assert got is not None
            torch.testing.assert_close(got[0], _one_at_a_time(ds, key)[0], atol=0, rtol=0)
    addresses = {batch[0][0].data_ptr() for batch in kept[-ds._buffers.keep :]}  # type: ignore[index]
    del kept, batch, got
    assert ds.__getitems__(keys[0])[0][0].data_ptr() in addresses  # type: ignore[index]  # released: reused


def _counted_shared_allocations(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A counter of the shared segments workers allocate (forked workers inherit the patch)."""
    count = mp.get_context("fork").Value("i", 0)
    real = dataset_module.shared_tensor

    def counted(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        with count.get_lock():
            count.value += 1
        return real(shape, dtype)

    monkeypatch.setattr(dataset_module, "shared_tensor", counted)
    return count


def _epochs(index: ShardIndex, ds: ShardDataset, workers: int, epochs: range, context: str = "fork") -> Any:
    """Each epoch's batches as they arrive, from one loader (persistent workers)."""
    sampler = BlockShuffleSampler(index.row_groups(), seed=0)
    loader = DataLoader(
        ds, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=DropFailedCollate(SIZE),
        persistent_workers=workers > 0, multiprocessing_context=context if workers else None,
    )  # fmt: skip
    for epoch in epochs:
        sampler.set_epoch(epoch)
        yield from loader


def _reference(index: ShardIndex, epochs: range) -> list[torch.Tensor]:
    return [batch[0].clone() for batch in _epochs(index, _dataset(index), 0, epochs)]


def test_worker_buffers_are_reused_once_the_main_process_drops_the_batch(
    index: ShardIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _reference(index, range(4))
    count = _counted_shared_allocations(monkeypatch)
    ds = _dataset(index)
    got = 0
    for j, batch in enumerate(_epochs(index, ds, 2, range(4))):
        torch.testing.assert_close(batch[0], expected[j], atol=0, rtol=0)
        got += 1
        del batch  # dropped: its buffer may be written again
    assert got == len(expected) == 24  # 6 batches an epoch, one of them with the unreadable image left out (copied)
    assert count.value <= 10  # two workers, a few batches in flight each: reused, not one segment per batch
    assert not any(ds._buffers.shared.leases.get_obj()[:-1])  # every lease freed, the copied batch's too


def test_worker_batches_kept_by_the_caller_are_never_overwritten(
    index: ShardIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _reference(index, range(3))
    count = _counted_shared_allocations(monkeypatch)
    kept: list[Any] = []
    for j, batch in enumerate(_epochs(index, _dataset(index), 2, range(3))):
        holders = (batch, batch[0][1:3], batch[0][2].numpy(), batch[0].view(len(batch[0]), -1)[:, 5:])
        kept.append(holders[j % 4])  # the batch, a view, a numpy array of a row, a view of a view
        del batch, holders
    assert count.value >= 15  # none reused while kept (the 3 batches with a failed sample were copied)
    for j, held in enumerate(kept):
        whole = expected[j]
        want = (whole, whole[1:3], whole[2], whole.view(len(whole), -1)[:, 5:])[j % 4]
        got = held[0] if j % 4 == 0 else torch.as_tensor(held)
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_a_spawned_worker_reuses_its_buffers_too(index: ShardIndex) -> None:
    ds = _dataset(index)
    expected = _reference(index, range(2))
    seen: list[int] = []
    leases = ds._buffers.shared.leases.get_obj()
    for j, batch in enumerate(_epochs(index, ds, 1, range(2), context="spawn")):
        torch.testing.assert_close(batch[0], expected[j], atol=0, rtol=0)
        seen.append(int(leases[-1]))  # the last lease number given out: the table is the main process's own
        del batch
    assert seen[-1] >= 12 and not any(leases[:-1])  # every batch's buffer leased through the shared table, all freed


def _take_the_lock_and_die(leases: Any) -> None:
    leases.get_lock().acquire()
    os._exit(0)  # killed inside the table's lock: it is never released


def test_a_worker_that_died_holding_the_lease_table_hangs_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    buffers = BatchBuffers()
    leases = buffers.shared.leases
    holder = mp.get_context("fork").Process(target=_take_the_lock_and_die, args=(leases,))
    holder.start()
    holder.join()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=0))
    got: list[torch.Tensor] = []
    calls = [
        lambda: got.append(buffers.take((2, 1, 4, 4), np.float32)),  # a worker's next batch
        lambda: dataset_module._release(buffers.shared.token, 0, 1),  # the main process letting go of one
    ]
    for call in calls:
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()  # gave up on the lock after a second
    assert got[0].shape == (2, 1, 4, 4) and got[0].is_shared()  # fresh shared memory instead of a pooled buffer
    assert not any(leases.get_obj()[:-1])  # no lease taken
