"""Shard format measurements: PNG vs JPEG (size, decode speed) and random access cost by row-group size.

    python benchmarks/shard_access.py [--images 512] [--size 320] [--json]

Uses real NIH sample images when ../shared/data is present (the realistic compressibility), else synthetic ones.
Everything is measured in the same run, so the comparisons hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from chexvision.data.shards import (
    ShardIndex,
    ShardRow,
    decode_image,
    encode_image,
    encode_jpeg,
    encode_png,
    write_shard,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih" / "sample-images"


def _images(n: int, size: int) -> list[np.ndarray]:
    paths = sorted(SAMPLES.glob("*.png"))
    if paths:
        out = [decode_image(p.read_bytes()) for p in paths[:n]]
        out = [cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in out]
        # Repeats with a flip so the access test sees more rows than the cache holds.
        return [
            (img if (i // len(out)) % 2 == 0 else img[:, ::-1].copy())
            for i, img in enumerate(out * (n // len(out) + 1))
        ][:n]
    from chexvision.data.synthetic import generate

    return [s.image for s in generate(n, size, seed=0)]


def _rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    images = _images(args.images, args.size)
    result: dict[str, object] = {
        "images": len(images),
        "size": args.size,
        "source": "nih" if SAMPLES.is_dir() else "synthetic",
    }
    for name, enc in (("png", encode_png), ("jpeg95", encode_jpeg)):
        blobs = [enc(img) for img in images]
        errors = [np.abs(decode_image(b).astype(np.int16) - img).mean() for b, img in zip(blobs, images, strict=True)]
        result[name] = {
            "mean_abs_error_grey_levels": round(float(np.mean(errors)), 3),
            "mean_kib": round(float(np.mean([len(b) for b in blobs])) / 1024, 1),
            "decode_images_per_second": round(_rate(decode_image, blobs), 1),
            "encode_images_per_second": round(_rate(enc, images[:128]), 1),
        }
    blobs = [encode_image(img) for img in images]
    rng = np.random.default_rng(0)
    access: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rg in (16, 64, 256):
            folder = Path(tmp) / f"rg{rg}"
            rows = [ShardRow(f"9{i:07d}_000.png", "No Finding", b) for i, b in enumerate(blobs)]
            write_shard(folder / "data-00000-of-00001.parquet", rows, row_group_size=rg)
            index = ShardIndex.open(folder)
            index.cache_row_groups = 1  # fully random access over a large data set rarely hits the cache
            order = rng.permutation(len(index))
            random_rate = _rate(index.read_image_bytes, list(order))
            index = ShardIndex.open(folder)
            groups = index.row_groups()
            block = [int(i) for g in rng.permutation(len(groups)) for i in rng.permutation(groups[g])]
            block_rate = _rate(index.read_image_bytes, block)
            access[f"row_group_{rg}"] = {
                "random_reads_per_second": round(random_rate, 1),
                "block_shuffled_reads_per_second": round(block_rate, 1),
            }
    result["access"] = access
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
