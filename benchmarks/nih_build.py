"""Build throughput from 1024 px NIH PNGs (`chexvision data build`), and the Kaggle-copy vs Hugging Face estimate.

    python benchmarks/nih_build.py [--images 96] [--rounds 3] [--json]

Inputs: real NIH X-rays from ../shared/data/nih/sample-images (512 px copies), upsampled to the release's
1024 x 1024 (bicubic) and written as 8-bit PNG (zlib level 6), laid out as Kaggle's copy (images_001/images/).
Upsampled images are smoother than the originals, so they compress better (mean size printed beside the
originals' ~0.39 MB): a decode here may be a little cheaper than on the real files.

Per round, interleaved, one thread: the build itself (`build_shards(workers=1)`, inline: decode, INTER_AREA resize to
320, CLAHE, JPEG q95, Parquet write) in images per CPU-second of this process, and the stages alone on the same
files. Then the published set's size is estimated by encoding the same images as its 320 px RGB PNGs.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from chexvision.data.build import build_shards
from chexvision.data.shards import decode_image, encode_image
from chexvision.data.transforms import apply_clahe, resize_to

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih" / "sample-images"
NIH_IMAGES = 112_120
NIH_ORIGINAL_MEAN_MB = 0.39  # the release's ~42 GB of PNGs over 112,120 images (public figure; an approximation)
KAGGLE_CORES = 4


def _make_inputs(folder: Path, count: int) -> list[Path]:
    out = folder / "images_001" / "images"
    out.mkdir(parents=True)
    paths = []
    for src in sorted(SAMPLES.glob("*.png"))[:count]:
        img = cv2.resize(decode_image(src.read_bytes()), (1024, 1024), interpolation=cv2.INTER_CUBIC)
        dst = out / src.name
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        paths.append(dst)
    return paths


def _cpu_rate(fn: Any, n: int) -> float:
    start = time.process_time()
    fn()
    return n / max(time.process_time() - start, 1e-9)


def _stages(paths: list[Path]) -> dict[str, float]:
    blobs = [p.read_bytes() for p in paths]
    imgs = [decode_image(b) for b in blobs]
    small = [resize_to(i, 320) for i in imgs]
    clahed = [apply_clahe(s) for s in small]
    n = len(blobs)
    return {
        "decode_1024_png": _cpu_rate(lambda: [decode_image(b) for b in blobs], n),
        "resize_to_320": _cpu_rate(lambda: [resize_to(i, 320) for i in imgs], n),
        "clahe_320": _cpu_rate(lambda: [apply_clahe(s) for s in small], n),
        "jpeg_encode_320": _cpu_rate(lambda: [encode_image(c) for c in clahed], n),
    }


def _build_rate(images: Path, work: Path, n: int, round_no: int) -> float:
    out = work / f"out{round_no}"
    start = time.process_time()
    result = build_shards(images, out, size=320, workers=1, shard_size=1000)
    cpu = time.process_time() - start
    assert result.images == n, result
    shutil.rmtree(out)
    return n / cpu


def _published_png_bytes(paths: list[Path]) -> float:
    """Mean size of the same images as the published set stores them: 320 px RGB PNG (PIL, its default level)."""
    from PIL import Image

    sizes = []
    for p in paths:
        gray = resize_to(decode_image(p.read_bytes()), 320)
        buf = io.BytesIO()
        Image.fromarray(np.stack([gray] * 3, axis=-1)).save(buf, format="PNG")
        sizes.append(buf.tell())
    return float(statistics.mean(sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = _make_inputs(work / "kaggle-nih", args.images)
        n = len(paths)
        builds, stages = [], []
        for r in range(args.rounds):
            builds.append(_build_rate(work / "kaggle-nih", work, n, r))
            stages.append(_stages(paths))
        input_mb = statistics.mean(p.stat().st_size for p in paths) / 1e6
        published = _published_png_bytes(paths)
    build = statistics.median(builds)
    stage = {k: round(statistics.median(s[k] for s in stages), 1) for k in stages[0]}
    published_gb = published * NIH_IMAGES / 1e9
    result = {
        "images": n,
        "rounds": args.rounds,
        "input_mean_mb": round(input_mb, 3),
        "nih_original_mean_mb": NIH_ORIGINAL_MEAN_MB,
        "build_images_per_cpu_second": round(build, 1),
        "build_rounds": [round(b, 1) for b in builds],
        "stages_images_per_cpu_second": stage,
        "estimate_kaggle_build_minutes": round(NIH_IMAGES / (build * KAGGLE_CORES) / 60, 1),
        "estimate_published_png_bytes_per_image": round(published),
        "estimate_published_set_gb": round(published_gb, 1),
        "estimate_hf_download_minutes": {
            f"{mbps} MB/s": round(published_gb * 1000 / mbps / 60, 1) for mbps in (50, 100, 200)
        },
        "estimate_kaggle_mount_read_gb": round(NIH_ORIGINAL_MEAN_MB * NIH_IMAGES / 1000, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
