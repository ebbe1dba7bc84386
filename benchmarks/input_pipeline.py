"""Input-pipeline throughput sweep: ours (CPU and GPU paths) against the original pipeline, same run, same shards.

    python benchmarks/input_pipeline.py [--data DIR] [--images 1000] [--size 320] [--workers 0 1]
                                        [--modes cpu gpu] [--batches 20] [--batch-size 32]

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


def _data(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    from chexvision.data.synthetic import write_synthetic

    out = Path(f"/tmp/chexvision-bench-{args.size}px-{args.images}")
    if not (out / "dataset.json").is_file():
        print(f"writing {args.images} synthetic {args.size} px images to {out}", file=sys.stderr)
        write_synthetic(out, args.images, args.size, seed=0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", help="data folder with shards (default: synthetic, written once)")
    parser.add_argument("--images", type=int, default=1000, help="synthetic images when --data is not given")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--modes", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    data = _data(args)
    rows = []
    for mode in args.modes:
        for workers in args.workers:
            result = bench_loader(
                data, workers=workers, batches=args.batches, batch_size=args.batch_size, mode=mode, size=args.size
            )
            print(json.dumps(result), flush=True)
            rows.append(result)

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    print(
        "\n| mode | workers | ours img/s | original img/s | speed-up | ours img/CPU-s | original img/CPU-s "
        "| decode only img/CPU-s | GPU augment |\n|---|---|---|---|---|---|---|---|---|",
        file=sys.stderr,
    )
    for r in rows:
        print(
            f"| {r['mode']} | {r['workers']} | {num(r['images_per_second'])} | {num(r['baseline_images_per_second'])} "
            f"| {r['speedup']}x | {num(r['images_per_cpu_second'])} | {num(r['baseline_images_per_cpu_second'])} "
            f"| {num(r['decode_only_images_per_cpu_second'])} | {r['gpu_augment']} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
