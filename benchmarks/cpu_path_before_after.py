"""The CPU path before and after a change, interleaved: this checkout against another one (e.g. the commit before).

    git worktree add /tmp/before <commit>
    python benchmarks/cpu_path_before_after.py --before /tmp/before --data DIR [--rounds 21] [--batches 10]

One long-lived process per variant, each with PYTHONPATH pointing at its checkout: the old code with its own
defaults, then this code with each interpolation. Each round asks every process, in turn (the order rotates from
round to round, so no variant always runs first or after the same one), for one measurement:
`chexvision.bench.loader.bench_loader(mode="cpu", workers=0)` (ours only: no baselines) after timing the decode
alone (`decode_image`, one OpenCV thread) on the same images, the same way whichever checkout it runs, so each
variant's "fraction of the decoder" is paired with a decode measured just before it; then the augmentation of one
image at a time (`CpuTrainTransform(aug)(img, rng)`, what `dataset[i]` runs) on 100 decoded images. The processes
stay up between rounds (no import, start-up or cold-cache cost in any figure). Prints one JSON line per
measurement and a Markdown table of the medians on stderr; "/ before" is the median over rounds of each round's
ratio to the old checkout.
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
import numpy as np
from chexvision.bench.loader import bench_loader
from chexvision.config import AugConfig
from chexvision.data.shards import ShardIndex, decode_image
from chexvision.data.transforms import CpuTrainTransform
data, batches, interpolation = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
aug = AugConfig() if interpolation == "-" else AugConfig(interpolation=interpolation)
index = ShardIndex.open(data)
n = batches * 32
blobs = [index.read_image_bytes(i) for i in range(min(n, len(index)))]
images = [decode_image(b) for b in blobs[:100]]
cv2.setNumThreads(1)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "go":
        break
    c0 = time.process_time()
    for i in range(n):
        decode_image(blobs[i % len(blobs)])
    decode = n / (time.process_time() - c0)
    r = bench_loader(data, workers=0, batches=batches, mode="cpu", rounds=1, baseline=False, albumentations=False,
                     aug=aug)
    ours = r["images_per_cpu_second"]
    transform, rng = CpuTrainTransform(aug), np.random.default_rng(0)  # one image at a time: `dataset[i]`
    c0 = time.process_time()
    for img in images:
        transform(img, rng)
    single = (time.process_time() - c0) / len(images) * 1e6
    print(json.dumps({"images_per_cpu_second": ours, "decode_only_images_per_cpu_second": decode,
                      "decode_fraction": ours / decode, "one_image_us": single}), flush=True)
"""


class _Variant:
    """One long-lived measuring process running `_CODE` on one checkout."""

    def __init__(self, tree: Path, data: Path, batches: int, interpolation: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CODE, str(data), str(batches), interpolation],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree,
        )  # fmt: skip
        if self._line() != "ready":
            raise RuntimeError(f"the measuring process for {tree} did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a measuring process exited with {self.proc.wait()}")
        return line.strip()

    def measure(self) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        result: dict[str, float] = json.loads(self._line())
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="checkout of the code before the change")
    parser.add_argument("--data", required=True, type=Path, help="data folder with shards")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    variants = {
        "before (that checkout's defaults)": (args.before.resolve(), "-"),
        "after, bilinear": (HERE, "bilinear"),
        "after, nearest (default)": (HERE, "nearest"),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    procs = {
        name: _Variant(tree, args.data.resolve(), args.batches, interp) for name, (tree, interp) in variants.items()
    }
    names = list(variants)
    try:
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # the order rotates
                result = procs[name].measure()
                print(json.dumps({"variant": name, "round": r, **result}), flush=True)
                results[name].append(result)
    finally:
        for proc in procs.values():
            proc.close()
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
