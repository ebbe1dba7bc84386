"""Input-pipeline throughput sweep: ours (CPU and GPU paths) against the original pipeline and albumentations 2.x.

    python benchmarks/input_pipeline.py [--data DIR] [--images 1000] [--size 320] [--workers 0 1]
                                        [--modes cpu gpu] [--batches 20] [--batch-size 32] [--rounds 3]
                                        [--interpolations nearest bilinear]

Same run, same shards, interleaved: each round times every pipeline once, in turn; figures are medians of rounds.
`--components` instead prints what one image costs in each step of the CPU path (CPU microseconds, one thread,
medians of interleaved rounds): the decode, the LUT, the one warp (nearest, the default, and bilinear) of the
LUT's float image into a batch buffer, the whole augmentation with each interpolation (one image at a time, and
in batches of 32 as the loader runs it, into a reused buffer and into fresh shared memory as a worker did before
`WorkerBuffers`), and (what the loader no longer does) a float32 batch stack.

Without --data it writes synthetic data once to /tmp/chexvision-bench-<size>px-<images> (`chexvision data synth`).
One JSON line per (mode, workers) on stdout, from `chexvision.bench.loader.bench_loader` (the same function
`chexvision bench loader` runs), then a Markdown table for BENCHMARKS.md on stderr. workers=0 and workers=1 are
the per-core figures (one torch and one OpenCV thread per process).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chexvision.bench.loader import bench_loader
from chexvision.config import AugConfig


def _data(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    from chexvision.data.synthetic import write_synthetic

    out = Path(f"/tmp/chexvision-bench-{args.size}px-{args.images}")
    if not (out / "dataset.json").is_file():
        print(f"writing {args.images} synthetic {args.size} px images to {out}", file=sys.stderr)
        write_synthetic(out, args.images, args.size, seed=0)
    return out


def _components(data: Path, rounds: int) -> None:
    import time

    import cv2
    import numpy as np
    import torch

    from chexvision.config import AugConfig
    from chexvision.data.dataset import shared_tensor
    from chexvision.data.shards import ShardIndex, decode_image
    from chexvision.data.transforms import (
        BatchParams,
        _normalize_lut,
        affine_matrix,
        augment_batch_cpu,
        augment_cpu,
        normalize_cpu,
        sample_params,
    )

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    index = ShardIndex.open(data)
    blobs = [index.read_image_bytes(i) for i in range(min(100, len(index)))]
    images = [decode_image(b) for b in blobs]
    h, w = images[0].shape
    rng = np.random.default_rng(0)
    params = [sample_params(AugConfig(), rng, h, w) for _ in images]
    mats = [affine_matrix(p, h, w)[:2] for p in params]
    batched = [BatchParams.of(params[i : i + 32]) for i in range(0, len(params), 32)]  # drawn per batch, as the loader
    floats = [torch.from_numpy(normalize_cpu(im)).unsqueeze(0) for im in images[:32]]
    batch = np.zeros((len(images), h, w), dtype=np.float32)
    scratch = np.empty((h, w), dtype=np.float32)
    lut = _normalize_lut(0.449, 0.226)
    steps = {
        "decode (cv2.imdecode, the decoder)": lambda i: decode_image(blobs[i]),
        "LUT uint8 -> float32 (jitter + normalise; into a reused scratch)": lambda i: cv2.LUT(images[i], lut, scratch),
        "LUT + warpAffine float32 nearest into the batch (the default)": lambda i: cv2.warpAffine(
            cv2.LUT(images[i], lut, scratch), mats[i], (w, h), batch[i], flags=cv2.INTER_NEAREST
        ),
        "LUT + warpAffine float32 bilinear into the batch": lambda i: cv2.warpAffine(
            cv2.LUT(images[i], lut, scratch), mats[i], (w, h), batch[i], flags=cv2.INTER_LINEAR
        ),
        "augment_cpu nearest (the whole augmentation, into the batch)": lambda i: augment_cpu(
            images[i], params[i], interpolation="nearest", out=batch[i], scratch=scratch
        ),
        "augment_cpu bilinear (into the batch)": lambda i: augment_cpu(
            images[i], params[i], interpolation="bilinear", out=batch[i], scratch=scratch
        ),
        "augment_batch_cpu nearest, batches of 32 into a reused buffer (the loader, workers=0)": lambda i: (
            augment_batch_cpu(images[i : i + 32], batched[i // 32], batch[i : i + 32], scratch=scratch)
            if i % 32 == 0
            else None
        ),
        "augment_batch_cpu nearest into fresh shared memory per batch (a worker without WorkerBuffers)": lambda i: (
            augment_batch_cpu(
                images[i : i + 32],
                batched[i // 32],
                shared_tensor((len(images[i : i + 32]), h, w), torch.float32).numpy(),
                scratch=scratch,
            )
            if i % 32 == 0
            else None
        ),
        "torch.stack of float32 [1,H,W] (per image; not done since the batched fetch)": lambda i: (
            torch.stack(floats) if i < 1 else None
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            n = 1 if name.startswith("torch.stack") else len(images)
            c0 = time.process_time()
            for i in range(n):
                fn(i)
            per = (time.process_time() - c0) / (32 if n == 1 else n)
            times[name].append(per * 1e6)
    print(f"\n| step ({h} px, one thread) | CPU us per image |\n|---|---|", file=sys.stderr)
    for name, values in times.items():
        print(f"| {name} | {sorted(values)[len(values) // 2]:.0f} |", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", help="data folder with shards (default: synthetic, written once)")
    parser.add_argument("--images", type=int, default=1000, help="synthetic images when --data is not given")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--modes", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interpolations", nargs="+", choices=["nearest", "bilinear"], default=["nearest"])
    parser.add_argument("--no-albumentations", action="store_true", help="skip the albumentations baseline")
    parser.add_argument("--components", action="store_true", help="per-step cost of the CPU path instead")
    args = parser.parse_args()

    data = _data(args)
    if args.components:
        _components(data, max(args.rounds, 5))
        return
    rows = []
    for interpolation in args.interpolations:
        for mode in args.modes:
            for workers in args.workers:
                result = bench_loader(
                    data, workers=workers, batches=args.batches, batch_size=args.batch_size, mode=mode,
                    size=args.size, rounds=args.rounds, albumentations=not args.no_albumentations,
                    aug=AugConfig(interpolation=interpolation),
                )  # fmt: skip
                print(json.dumps(result), flush=True)
                rows.append(result)

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    print(
        "\n| interpolation | mode | workers | ours img/s | albumentations img/s | ours / albumentations "
        "| original img/s "
        "| ours / original | ours img/CPU-s | albumentations img/CPU-s | original img/CPU-s | decode only img/CPU-s "
        "| ours / decode | GPU augment |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        file=sys.stderr,
    )
    for r in rows:
        fraction = "-" if r["decode_fraction"] is None else f"{100 * r['decode_fraction']:.0f} %"
        print(
            f"| {r['interpolation']} | {r['mode']} | {r['workers']} | {num(r['images_per_second'])} "
            f"| {num(r['albumentations_images_per_second'])} | {r['albumentations_speedup']}x "
            f"| {num(r['baseline_images_per_second'])} | {r['speedup']}x | {num(r['images_per_cpu_second'])} "
            f"| {num(r['albumentations_images_per_cpu_second'])} | {num(r['baseline_images_per_cpu_second'])} "
            f"| {num(r['decode_only_images_per_cpu_second'])} | {fraction} | {r['gpu_augment']} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
