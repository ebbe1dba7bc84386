"""Smoke-preset training benchmark: wall clock (incl. start-up) and best val macro AUC for both models.

Runs, one after the other, as subprocesses exactly as a user would:

    chexvision data synth --out DIR/data --images 2000 --size 64
    chexvision train --model seresnet --preset smoke --data DIR/data --out DIR/seresnet
    chexvision train --model densenet --preset smoke --data DIR/data --out DIR/densenet

and prints one JSON object. Target (issue 3): each training run < 90 s on 2 CPU cores with val macro AUC >= 0.90.

    .venv/bin/python benchmarks/smoke_train.py [--work DIR] [--images 2000] [--size 64] [--models seresnet densenet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 90.0
TARGET_AUC = 0.90


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(work: Path, images: int, size: int, models: list[str], extra: list[str]) -> dict[str, Any]:
    env = {**os.environ, "CI": "1"}  # plain per-epoch lines instead of progress bars
    cli = [sys.executable, "-m", "chexvision"]
    data = work / "data"
    synth_cmd = [*cli, "data", "synth", "--out", str(data), "--images", str(images), "--size", str(size)]
    result: dict[str, Any] = {
        "images": images,
        "size": size,
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "synth_seconds": round(_timed(synth_cmd, env), 2),
        "models": {},
    }
    for model in models:
        out = work / model
        shutil.rmtree(out, ignore_errors=True)  # train never overwrites a run
        cmd = [*cli, "train", "--model", model, "--preset", "smoke", "--data", str(data), "--out", str(out), *extra]
        seconds = _timed(cmd, env)
        history = json.loads((out / "history.json").read_text())
        auc = history["best_val_macro_auc"]
        result["models"][model] = {
            "seconds": round(seconds, 2),
            "epochs": len(history["epochs"]),
            "best_epoch": history["best_epoch"],
            "best_val_macro_auc": None if auc is None else round(auc, 4),
            "train_seconds_per_epoch": round(sum(e["seconds"] for e in history["epochs"]) / len(history["epochs"]), 2),
            "meets_target": seconds < TARGET_SECONDS and auc is not None and auc >= TARGET_AUC,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=["seresnet", "densenet"])
    parser.add_argument("--set", action="append", default=[], help="extra `--set key=value` for both runs")
    args = parser.parse_args()
    extra = [item for kv in args.set for item in ("--set", kv)]
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(args.work, args.images, args.size, args.models, extra), indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="chexvision-smoke-") as tmp:
        print(json.dumps(run(Path(tmp), args.images, args.size, args.models, extra), indent=2))


if __name__ == "__main__":
    main()
