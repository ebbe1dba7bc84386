"""Where the CPU path's time goes, and the alternatives tried against it, interleaved in one process.

    python benchmarks/cpu_path_alternatives.py --data DIR [--rounds 21]

On the first 128 images of DIR's shards (320 px), one OpenCV and one torch thread, each round times every row once,
in turn (medians of the rounds, CPU microseconds per image). The rows come in groups, each against what the CPU path
does today:

- the warp's output: LUT + float32 nearest warp into a 13 MB batch buffer (today) or into one hot buffer;
  a uint8 nearest warp then the LUT (the other order); each warp alone on a hot input;
- the contrast mean: today's exact mean (one reduction, or four when the brightness factor is above 1) against a
  256-bin `cv2.calcHist` and a dot product;
- the blur when drawn (7x7, sigma 1, float32 in place), one LUT's build, the batch's draws + parameters + matrices;
- the loader (`ShardDataset` + `DataLoader`, workers 0): a batch through the DataLoader, the same batch through
  `__getitems__` + the collate directly, and augmenting each image right after its own decode (a lazy image
  source) instead of decoding the batch first;
- with numba installed (not a dependency of ours): a fused LUT + nearest gather, one pass instead of two.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch

from chexvision.bench.loader import _ours
from chexvision.config import AugConfig
from chexvision.data.dataset import ShardDataset
from chexvision.data.loader import BlockShuffleSampler
from chexvision.data.shards import ShardIndex, decode_image
from chexvision.data.transforms import (
    _LEVELS,
    BatchParams,
    CpuTrainTransform,
    _brightened_mean,
    _jitter_lut,
    _matrices,
    _normalize_lut,
    sample_uniforms,
)

N, SIZE = 128, 320


def _numba_gather() -> Callable[..., None] | None:
    try:
        import numba  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None

    @numba.njit(nogil=True, boundscheck=False)  # type: ignore[misc, unused-ignore]
    def gather(img: Any, lut: Any, inv: Any, border: float, out: Any, adx: Any, ady: Any) -> None:
        # OpenCV's nearest rule: 10-bit fixed point, rounded; the valid run of each row found from both ends
        h, w = out.shape
        sh, sw = img.shape
        for x in range(w):
            adx[x] = int(np.round(inv[0, 0] * x * 1024.0))
            ady[x] = int(np.round(inv[1, 0] * x * 1024.0))
        for y in range(h):
            x0 = int(np.round((inv[0, 1] * y + inv[0, 2]) * 1024.0)) + 512
            y0 = int(np.round((inv[1, 1] * y + inv[1, 2]) * 1024.0)) + 512
            row, lo, hi = out[y], 0, w
            while lo < w:
                sx, sy = (x0 + adx[lo]) >> 10, (y0 + ady[lo]) >> 10
                if 0 <= sx < sw and 0 <= sy < sh:
                    break
                row[lo] = border
                lo += 1
            while hi > lo:
                sx, sy = (x0 + adx[hi - 1]) >> 10, (y0 + ady[hi - 1]) >> 10
                if 0 <= sx < sw and 0 <= sy < sh:
                    break
                hi -= 1
                row[hi] = border
            for x in range(lo, hi):
                row[x] = lut[img[(y0 + ady[x]) >> 10, (x0 + adx[x]) >> 10]]

    return gather  # type: ignore[no-any-return, unused-ignore]


class _Decoding:
    """A batch's images decoded as they are iterated: `augment_batch_cpu` (which only takes their number and
    iterates them) then augments each image right after its own decode."""

    def __init__(self, ds: ShardDataset, ks: list[int]) -> None:
        self.ds, self.ks = ds, ks

    def __len__(self) -> int:
        return len(self.ks)

    def __iter__(self) -> Iterator[np.ndarray | None]:
        return (self.ds.load_image(k) for k in self.ks)


def _lazy_getitems(ds: ShardDataset, keys: list[Any]) -> list[Any]:
    """`ShardDataset.__getitems__` with the images decoded one at a time as they are augmented (the alternative (a):
    the same code and pixels otherwise)."""
    from chexvision.data.dataset import _split_keys

    ks, epochs = _split_keys(keys)
    images = ds._buffers.take((len(ks), 1, ds.size, ds.size), np.float32)
    views = zip(images.unbind(0), torch.from_numpy(ds.labels14[ks]).unbind(0),
                torch.from_numpy(ds.binary[ks]).unbind(0), strict=True)  # fmt: skip
    assert isinstance(ds.transform, CpuTrainTransform)
    lazy = cast(Sequence[np.ndarray | None], _Decoding(ds, ks.tolist()))
    ds.transform.apply_batch(lazy, ds._uniforms(ks, epochs), out=images.numpy()[:, 0])
    return list(views)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    index = ShardIndex.open(args.data)
    images = [decode_image(index.read_image_bytes(i)) for i in range(N)]
    if images[0].shape != (SIZE, SIZE):
        raise SystemExit(f"needs {SIZE} px shards (chexvision data build ... --size {SIZE})")
    cfg = AugConfig()
    u = sample_uniforms(0, 0, np.arange(N))
    params = BatchParams.from_uniforms(cfg, u, SIZE, SIZE)
    matrices = _matrices(params, SIZE, SIZE)
    inverse = np.array([cv2.invertAffineTransform(m) for m in matrices])
    lut = _normalize_lut(0.449, 0.226)
    batch = np.zeros((32, SIZE, SIZE), np.float32)
    hot, scratch, scratch8 = (np.zeros((SIZE, SIZE), dt) for dt in (np.float32, np.float32, np.uint8))
    nearest = {"flags": cv2.INTER_NEAREST, "borderMode": cv2.BORDER_CONSTANT}

    def each(step: Callable[[int, np.ndarray], object]) -> Callable[[], int]:
        def run() -> int:
            for i, img in enumerate(images):
                step(i, img)
            return N

        return run

    def lut_warp(out: Callable[[int], np.ndarray]) -> Callable[[], int]:
        return each(lambda i, img: cv2.warpAffine(cv2.LUT(img, lut, scratch), matrices[i], (SIZE, SIZE), out(i),
                                                  borderValue=0.0, **nearest))  # fmt: skip

    def u8_then_lut(i: int, img: np.ndarray) -> None:
        cv2.LUT(cv2.warpAffine(img, matrices[i], (SIZE, SIZE), scratch8, borderValue=0, **nearest), lut, batch[i % 32])

    floats = cv2.LUT(images[0], lut)

    def hist_mean(img: np.ndarray, b: float) -> float:
        h = cv2.calcHist([img], [0], None, [256], [0, 256]).ravel()
        return float(h @ np.minimum(b * _LEVELS, 1.0)) / img.size

    def setup() -> int:
        for s in range(0, N, 32):
            draws = sample_uniforms(0, np.zeros(32, np.int64), np.arange(s, s + 32))
            _matrices(BatchParams.from_uniforms(cfg, draws, SIZE, SIZE), SIZE, SIZE)
        return N

    sampler = BlockShuffleSampler(index.row_groups(), seed=0)
    pipe = _ours(index, np.arange(len(index)), sampler, "cpu", cfg, False, SIZE, 32, 0)
    ds, collate = pipe.loader.dataset, pipe.loader.collate_fn
    assert isinstance(ds, ShardDataset) and collate is not None
    keys = [list(b) for b in pipe.loader.batch_sampler]  # type: ignore[union-attr]
    state: dict[str, Any] = {"it": iter(pipe.loader), "pos": 0}
    lazy_batch = collate(_lazy_getitems(ds, keys[0]))[0]
    if not torch.equal(lazy_batch, collate(ds.__getitems__(keys[0]))[0]):
        raise SystemExit("the lazy variant's pixels differ from the loader's")

    def via_dataloader() -> int:
        count = 0
        for _ in range(4):
            try:
                b = next(state["it"])
            except StopIteration:
                state["it"] = iter(pipe.loader)
                b = next(state["it"])
            count += len(b[0])
        return count

    def direct(getitems: Callable[[list[Any]], list[Any]]) -> Callable[[], int]:
        def run() -> int:
            count = 0
            for _ in range(4):
                count += len(collate(getitems(keys[state["pos"] % len(keys)]))[0])
                state["pos"] += 1
            return count

        return run

    rows: dict[str, Callable[[], int]] = {
        "LUT + float32 nearest warp into the 13 MB batch (today)": lut_warp(lambda i: batch[i % 32]),
        "LUT + float32 nearest warp into one hot buffer": lut_warp(lambda i: hot),
        "uint8 nearest warp, then the LUT into the batch": each(u8_then_lut),
        "uint8 nearest warp alone (hot input)": each(
            lambda i, img: cv2.warpAffine(img, matrices[i], (SIZE, SIZE), scratch8, borderValue=0, **nearest)
        ),
        "float32 nearest warp alone (hot input)": each(
            lambda i, img: cv2.warpAffine(floats, matrices[i], (SIZE, SIZE), hot, borderValue=0.0, **nearest)
        ),
        "contrast mean, brightness <= 1 (today: one reduction)": each(lambda i, img: _brightened_mean(img, 0.9)),
        "contrast mean, brightness > 1 (today: four reductions)": each(lambda i, img: _brightened_mean(img, 1.2)),
        "contrast mean from cv2.calcHist": each(lambda i, img: hist_mean(img, 1.2)),
        "blur 7x7 sigma 1, float32 in place (when drawn)": each(
            lambda i, img: cv2.GaussianBlur(hot, (7, 7), 1.0, dst=hot, borderType=cv2.BORDER_REFLECT_101)
        ),
        "one LUT's build after its mean (slope, offset, clamp, float32)": each(
            lambda i, img: _jitter_lut(img, 1.1, 1.0, 0.449, 0.226)
        ),
        "a batch's draws + parameters + matrices, per image": setup,
        "loader: a batch through the DataLoader": via_dataloader,
        "loader: __getitems__ + collate directly (decode the batch first: today)": direct(ds.__getitems__),
        "loader: __getitems__ + collate, each image augmented right after its decode": direct(
            lambda k: _lazy_getitems(ds, k)
        ),
    }
    gather = _numba_gather()
    if gather is not None:
        adx, ady = np.empty(SIZE, np.int64), np.empty(SIZE, np.int64)
        gather(images[0], lut, inverse[0], 0.0, hot, adx, ady)  # compile
        rows["numba: fused LUT + nearest gather into the batch, one pass"] = each(
            lambda i, img: gather(img, lut, inverse[i], 0.0, batch[i % 32], adx, ady)
        )
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, run in rows.items():
            c0 = time.process_time()
            count = run()
            times[name].append((time.process_time() - c0) / count * 1e6)
    print("| step (320 px, one thread) | CPU us per image, median | min |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f} |")
    if gather is None:
        print("\n(numba not installed: the fused gather row is left out)")


if __name__ == "__main__":
    main()
