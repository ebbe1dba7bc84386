"""Does Grad-CAM of a model trained on synthetic data land on the planted finding more often than chance?

The synthetic data set writes every planted finding's box to `bbox.csv` (NIH BBox_List format), so the
localization score of `chexvision evaluate --localization` can be measured where the truth is known. For each
test image with boxes and each of its boxed classes, Grad-CAM (on `forward_features`) of that class is scored:

- pointing game: the strongest cell of the map lies in a box of that class; chance = the boxes' share of the
  image (a uniformly random point), and a one-sided Poisson-binomial test of the hits against it;
- IoBB >= 0.1 / 0.25 / 0.5 of the largest map region >= 50 % of the peak; chance = the same box placed at random.

Two controls: the same architecture untrained (random weights), and the chance levels. Prints a Markdown table
(for BENCHMARKS.md) and writes JSON.

    python benchmarks/cam_localization.py --data DIR --run RUN_DIR [--out cam_localization.json]
    python benchmarks/cam_localization.py --workdir /tmp/camloc   # synthesise 2000 x 256 px, train, then measure

Measured (2026-11-26, 2 shared CPU cores, tiny seresnet of the smoke preset, synthetic seed 0, 400 (image, class)
pairs on 229 test images): trained 60 epochs at 256 px (8x8 map; val macro AUROC 0.972): pointing 0.42 vs
chance 0.14 (p = 2.5e-67), untrained 0.08, class-location prior 0.53; IoBB >= 0.1 / 0.25 / 0.5: 0.67 / 0.47 /
0.26 vs chance 0.47 / 0.35 / 0.20. Weaker models localise worse (30 epochs, val 0.86: pointing 0.23; 128 px,
16 epochs: 0.20; 64 px, where the map is 2x2, the untrained control already scores 0.25: no information).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from chexvision.data.bbox import read_bbox_csv
from chexvision.data.shards import ShardIndex
from chexvision.evaluate.evaluation import localize_run
from chexvision.evaluate.localization import box_mask
from chexvision.evaluate.split_predict import split_indices
from chexvision.inference.load import LoadedModel, load_model_dir

THRESHOLDS = ("0.1", "0.25", "0.5")


def _prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    work = Path(args.workdir)
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        from chexvision.data.synthetic import write_synthetic

        write_synthetic(data, args.images, args.size, args.seed)
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        cmd = [sys.executable, "-m", "chexvision", "train", "--model", args.model, "--data", str(data),
               "--out", str(run), "--preset", "smoke", "--set", f"data.size={args.size}",
               "--set", f"schedule.epochs={args.epochs}"]  # fmt: skip
        subprocess.run(cmd, check=True)
    return data, run


def _untrained(run: LoadedModel, seed: int) -> LoadedModel:
    import torch

    from chexvision.models import build_from_config

    torch.manual_seed(seed)
    model = build_from_config(run.config["model"]).eval()
    return dataclasses.replace(run, name="untrained", model=model)


def _prior_pointing(index: ShardIndex, train: np.ndarray, test: np.ndarray, bbox: Path, size: int) -> dict[str, Any]:
    """Control that ignores the image: point at the pixel most often inside a training box of the class."""
    boxes = read_bbox_csv(bbox)
    scale = size / float(max(index.read_image(int(test[0])).shape))  # synthetic boxes: stored-image pixels

    def pairs(rows: np.ndarray) -> list[tuple[str, list[Any]]]:
        out = []
        for i in rows:
            found = boxes.get(index.filenames[int(i)], [])
            for label in sorted({b.label for b in found}):
                out.append((label, [b.scaled(scale, scale) for b in found if b.label == label]))
        return out

    heat: dict[str, np.ndarray] = {}
    for label, bxs in pairs(train):
        heat.setdefault(label, np.zeros((size, size))).__iadd__(box_mask(bxs, (size, size)))
    hits: dict[str, list[float]] = {}
    for label, bxs in pairs(test):
        if label in heat:
            y, x = np.unravel_index(int(np.argmax(heat[label])), heat[label].shape)
            hits.setdefault(label, []).append(float(box_mask(bxs, (size, size))[y, x]))
    every = [h for v in hits.values() for h in v]
    return {"overall": float(np.mean(every)), "per_class": {k: float(np.mean(v)) for k, v in hits.items()}}


def _table(results: dict[str, dict[str, Any]]) -> str:
    head = "| model | class | n | pointing (chance) | " + " | ".join(f"IoBB>={t} (chance)" for t in THRESHOLDS)
    lines = [head + " |", "|---" * (4 + len(THRESHOLDS)) + "|"]
    for name, loc in results.items():
        for label, s in [("all", loc["overall"]), *loc["per_class"].items()]:
            cells = [f"{s['pointing']:.2f} ({s['pointing_chance']:.2f})"]
            cells += [f"{s[f'iobb@{t}']:.2f} ({s[f'iobb@{t}_chance']:.2f})" for t in THRESHOLDS]
            lines.append(f"| {name} | {label} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="synthetic data folder with bbox.csv (default: generate one)")
    parser.add_argument("--run", help="trained run directory (default: train one with the smoke preset)")
    parser.add_argument("--workdir", default="camloc-work", help="where generated data/run go")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="image side; the map is size/32 cells wide")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (smoke preset otherwise)")
    parser.add_argument("--model", default="seresnet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default="cam_localization.json")
    args = parser.parse_args()

    data, run_dir = _prepare(args)
    t0 = time.perf_counter()
    run = load_model_dir(run_dir)
    index = ShardIndex.open(data)
    rows = split_indices(index, run.info, args.split, data_dir=data)
    bbox = data / "bbox.csv"
    results = {
        "trained": localize_run(run, index, rows, bbox, data_dir=data, seed=args.seed),
        "untrained": localize_run(_untrained(run, args.seed), index, rows, bbox, data_dir=data, seed=args.seed),
    }
    train_rows = split_indices(index, run.info, "train", data_dir=data)
    prior = _prior_pointing(index, train_rows, rows, bbox, int(run.config["data"]["size"]))
    overall = results["trained"]["overall"]
    summary = {
        "data": str(data),
        "run": str(run_dir),
        "split": args.split,
        "size": run.config["data"]["size"],
        "images_with_boxes": results["trained"]["images"],
        "pairs": overall["n"],
        "pointing": overall["pointing"],
        "pointing_chance": overall["pointing_chance"],
        "pointing_p_value": overall["pointing_p_value"],
        "pointing_untrained": results["untrained"]["overall"]["pointing"],
        "pointing_class_prior": prior["overall"],
        "class_prior": prior,
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(_table({k: v for k, v in results.items()}))
    print(
        f"\ntrained: pointing {overall['pointing']:.3f} vs chance {overall['pointing_chance']:.3f} "
        f"({overall['pointing_hits']:.0f} hits, {overall['pointing_expected_hits']:.1f} expected; "
        f"one-sided p = {overall['pointing_p_value']:.2g}) on {overall['n']} (image, class) pairs of "
        f"{results['trained']['images']} {args.split} images; untrained {summary['pointing_untrained']:.3f}; "
        f"class-prior point {prior['overall']:.3f}; {summary['seconds']} s"
    )


if __name__ == "__main__":
    main()
