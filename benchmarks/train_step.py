"""Training-step throughput: images/s of forward + backward + AdamW for each model and setting.

    python benchmarks/train_step.py [--models densenet seresnet] [--size 320] [--batches 32 64 128]
                                    [--amp] [--channels-last] [--compile MODE] [--steps 20] [--warmup 5]
                                    [--variant full|tiny|smoke] [--threads N]
    python benchmarks/train_step.py --interleave channels_last|compile [--sizes 64 128] [--rounds 3] ...

One JSON line per measurement on stdout, from `chexvision.bench.train_step.bench_train_step` (the same function
`chexvision bench train` runs). A setting that runs out of GPU memory prints a line with "error" and the sweep
goes on. Runs on CUDA when available, else the CPU (use --variant tiny or smoke there).

`--interleave X` measures every (model, size, batch) with X off and on, alternating, for `--rounds` rounds, and
prints a Markdown table of the medians (and the on/off ratio) on stderr: baseline and candidate share the
machine's load alike. `--variant smoke` uses the small variants of the smoke preset (what CPU training runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import torch

from chexvision.bench.train_step import bench_train_step
from chexvision.config import load_config
from chexvision.models import list_models


def _kwargs(model: str, variant: str) -> dict[str, Any] | None:
    if variant == "smoke":
        return dict(load_config("smoke", overrides=[f"model.name={model}"]).model.kwargs)
    return None


def _one(args: argparse.Namespace, model: str, size: int, batch: int, **over: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "amp": args.amp, "channels_last": args.channels_last, "compile_mode": args.compile, **over,
    }  # fmt: skip
    try:
        result = bench_train_step(
            model, size=size, batch=batch, steps=args.steps, warmup=args.warmup, tiny=args.variant == "tiny",
            model_kwargs=_kwargs(model, args.variant), **settings,
        ).to_dict()  # fmt: skip
        result["variant"] = args.variant
    except torch.OutOfMemoryError as exc:
        result = {"model": model, "size": size, "batch": batch, "error": f"out of memory: {exc}"}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(json.dumps(result), flush=True)
    return result


def _interleave(args: argparse.Namespace) -> None:
    knob = args.interleave
    on: dict[str, Any] = (
        {"channels_last": True} if knob == "channels_last" else {"compile_mode": args.compile or "default"}
    )
    off: dict[str, Any] = {"channels_last": False} if knob == "channels_last" else {"compile_mode": None}
    rates: dict[tuple[str, int, int, str], list[float]] = {}
    for _ in range(args.rounds):
        for model in args.models:
            for size in args.sizes:
                for batch in args.batches:
                    for label, over in (("off", off), ("on", on)):
                        r = _one(args, model, size, batch, **over)
                        if "images_per_second" in r:
                            rates.setdefault((model, size, batch, label), []).append(r["images_per_second"])
    print(f"\n| model ({args.variant}) | size | batch | {knob} off img/s | {knob} on img/s | on/off |", file=sys.stderr)
    print("|---|---|---|---|---|---|", file=sys.stderr)
    for model in args.models:
        for size in args.sizes:
            for batch in args.batches:
                a, b = rates.get((model, size, batch, "off")), rates.get((model, size, batch, "on"))
                if a and b:
                    ma, mb = statistics.median(a), statistics.median(b)
                    print(f"| {model} | {size} | {batch} | {ma:.1f} | {mb:.1f} | {mb / ma:.2f}x |", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--sizes", nargs="+", type=int, help="sizes for --interleave (default: --size)")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", default=None, help="torch.compile mode (default | max-autotune | ...)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variant", choices=["full", "tiny", "smoke"], default="full")
    parser.add_argument("--tiny", action="store_true", help="same as --variant tiny")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--interleave", choices=["channels_last", "compile"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.tiny:
        args.variant = "tiny"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.sizes = args.sizes or [args.size]
    if args.interleave:
        _interleave(args)
        return
    for model in args.models:
        for batch in args.batches:
            _one(args, model, args.size, batch)


if __name__ == "__main__":
    main()
