"""Training-step throughput sweep: images/s of forward + backward + AdamW for each model and setting.

    python benchmarks/train_step.py [--models densenet seresnet] [--size 320] [--batches 32 64 128]
                                    [--amp] [--channels-last] [--steps 20] [--warmup 5] [--tiny]

One JSON line per (model, batch) on stdout, from `chexvision.bench.train_step.bench_train_step` (the same function
`chexvision bench train` runs). A setting that runs out of GPU memory prints a line with "error" and the sweep
goes on. Runs on CUDA when available, else the CPU (use --tiny there).
"""

from __future__ import annotations

import argparse
import json

import torch

from chexvision.bench.train_step import bench_train_step
from chexvision.models import list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()

    for model in args.models:
        for batch in args.batches:
            try:
                result = bench_train_step(
                    model,
                    size=args.size,
                    batch=batch,
                    amp=args.amp,
                    channels_last=args.channels_last,
                    steps=args.steps,
                    warmup=args.warmup,
                    tiny=args.tiny,
                ).to_dict()
            except torch.OutOfMemoryError as exc:
                result = {"model": model, "size": args.size, "batch": batch, "error": f"out of memory: {exc}"}
            finally:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
