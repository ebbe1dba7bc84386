"""The CPU path before and after a change, interleaved: this checkout against another one (e.g. the commit before).

    git worktree add /tmp/before <commit>
    python benchmarks/cpu_path_before_after.py --before /tmp/before --data DIR [--rounds 5] [--batches 8]

Each round runs `chexvision.bench.loader.bench_loader(mode="cpu", workers=0)` (ours only: no baselines) once per
variant, each in its own fresh process with PYTHONPATH pointing at that checkout, alternating: the old code, then
this code with each interpolation. Every process first times the decode alone (`decode_image`, one OpenCV thread)
on the same images, the same way whichever checkout it runs, so each variant's "fraction of the decoder" is
paired with a decode measured seconds before it; then it times the augmentation of one image at a time
(`CpuTrainTransform(aug)(img, rng)`, what `dataset[i]` runs) on 100 decoded images. Prints one JSON line per
process and a Markdown table of the medians on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

_CODE = """
import json, sys, time
from pathlib import Path
import cv2
from chexvision.bench.loader import bench_loader
from chexvision.config import AugConfig
from chexvision.data.shards import ShardIndex, decode_image
data, batches, interpolation = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
aug = AugConfig() if interpolation == "-" else AugConfig(interpolation=interpolation)
index = ShardIndex.open(data)
n = batches * 32
blobs = [index.read_image_bytes(i) for i in range(min(n, len(index)))]
cv2.setNumThreads(1)
c0 = time.process_time()
for i in range(n):
    decode_image(blobs[i % len(blobs)])
decode = n / (time.process_time() - c0)
r = bench_loader(data, workers=0, batches=batches, mode="cpu", rounds=1, baseline=False, albumentations=False, aug=aug)
ours = r["images_per_cpu_second"]
from chexvision.data.transforms import CpuTrainTransform  # one image at a time: `dataset[i]`'s augmentation
import numpy as np
transform, rng = CpuTrainTransform(aug), np.random.default_rng(0)
images = [decode_image(b) for b in blobs[:100]]
c0 = time.process_time()
for img in images:
    transform(img, rng)
single = (time.process_time() - c0) / len(images) * 1e6
print(json.dumps({"images_per_cpu_second": ours, "decode_only_images_per_cpu_second": decode,
                  "decode_fraction": ours / decode, "one_image_us": single}))
"""


def _run(tree: Path, data: Path, batches: int, interpolation: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _CODE, str(data), str(batches), interpolation],
        env=env, capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="checkout of the code before the change")
    parser.add_argument("--data", required=True, type=Path, help="data folder with shards")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    variants = {
        "before (that checkout's defaults)": (args.before.resolve(), "-"),
        "after, bilinear": (HERE, "bilinear"),
        "after, nearest (default)": (HERE, "nearest"),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (tree, interpolation) in variants.items():
            r = _run(tree, args.data.resolve(), args.batches, interpolation)
            print(json.dumps({"variant": name, **r}), flush=True)
            results[name].append(r)
    before = next(iter(results.values()))
    header = "| variant | ours img/CPU-s | decode only img/CPU-s | ours / decode | / before (paired) | one image (us) |"
    print(f"\n{header}\n|---|---|---|---|---|---|", file=sys.stderr)
    for name, rows in results.items():
        paired = statistics.median(
            r["images_per_cpu_second"] / b["images_per_cpu_second"] for r, b in zip(rows, before, strict=True)
        )

        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(r[key] for r in rows)

        print(
            f"| {name} | {med('images_per_cpu_second'):.0f} | {med('decode_only_images_per_cpu_second'):.0f} "
            f"| {100 * med('decode_fraction'):.0f} % | {paired:.2f}x | {med('one_image_us'):.0f} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
