"""The one-off cost of `chexvision data transcode` against what it saves per epoch.

    python benchmarks/transcode.py [--images 400] [--rounds 3] [--json]

Input: the published layout rebuilt from real NIH X-rays (../shared/data/nih/sample-images): 320 px RGB PNGs
(PIL, its default zlib level, as `datasets` stores images) in 4 Parquet shards with dataset.json `source: hf` (CLAHE
at decode). Per round, interleaved, one thread:

- transcode: `transcode_shards(workers=1)`, inline, in images per CPU-second of this process;
- the GPU path's CPU share (`chexvision.bench.loader.bench_loader(mode="gpu", workers=0)`: decode + uint8 batch,
  CLAHE at decode where the data needs it) on the published shards and on the transcoded ones.

Derived: the saving per image and epoch (1/published - 1/ours CPU-seconds), the break-even in epochs, and the
Kaggle figures for 112,120 images on 4 cores.
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
import pyarrow as pa
import pyarrow.parquet as pq

from chexvision.bench.loader import bench_loader
from chexvision.data.shards import decode_image
from chexvision.data.transcode import transcode_shards
from chexvision.data.transforms import resize_to

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih" / "sample-images"
NIH_IMAGES = 112_120
EPOCH_IMAGES = 86_524  # official train_val: what one epoch (train + validation) decodes
KAGGLE_CORES = 4


def _published(folder: Path, count: int, shards: int = 4) -> int:
    from PIL import Image

    rows: list[dict[str, Any]] = []
    for src in sorted(SAMPLES.glob("*.png"))[:count]:
        gray = resize_to(decode_image(src.read_bytes()), 320)
        buf = io.BytesIO()
        Image.fromarray(np.stack([gray] * 3, axis=-1)).save(buf, format="PNG")
        rows.append(
            {"image": {"bytes": buf.getvalue(), "path": src.name}, "labels": "No Finding", "filename": src.name}
        )
    (folder / "data").mkdir(parents=True)
    per = -(-len(rows) // shards)
    for i in range(shards):
        part = rows[i * per : (i + 1) * per]
        pq.write_table(pa.Table.from_pylist(part), folder / "data" / f"train-{i:05d}-of-{shards:05d}.parquet")
    (folder / "dataset.json").write_text(json.dumps({"source": "hf", "default_split_scheme": "official"}))
    return len(rows)


def _transcode_rate(src: Path, out: Path, n: int) -> float:
    start = time.process_time()
    result = transcode_shards(src, out, workers=1)
    cpu = time.process_time() - start
    assert result.images == n, result
    return n / cpu


def _loader_rate(data: Path, batches: int) -> float:
    res = bench_loader(data, mode="gpu", workers=0, batches=batches, batch_size=32, rounds=1, warmup=1,
                       baseline=False, albumentations=False)  # fmt: skip
    return float(res["images_per_cpu_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    transcode, published, ours = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n = _published(work / "hf", args.images)
        for r in range(args.rounds):
            out = work / f"ours{r}"
            transcode.append(_transcode_rate(work / "hf", out, n))
            published.append(_loader_rate(work / "hf", args.batches))
            ours.append(_loader_rate(out, args.batches))
            if r < args.rounds - 1:
                shutil.rmtree(out)
        png_kb = statistics.mean(p.stat().st_size for p in (work / "hf" / "data").glob("*.parquet")) * 4 / n / 1024
        jpg_kb = statistics.mean(p.stat().st_size for p in (out / "data").glob("*.parquet")) * 4 / n / 1024
    t, p, o = (statistics.median(v) for v in (transcode, published, ours))
    saving = 1 / p - 1 / o  # CPU-seconds saved per image and epoch
    result = {
        "images": n,
        "rounds": args.rounds,
        "transcode_images_per_cpu_second": round(t, 1),
        "gpu_path_cpu_share_published_images_per_cpu_second": round(p, 1),
        "gpu_path_cpu_share_transcoded_images_per_cpu_second": round(o, 1),
        "rounds_raw": {"transcode": transcode, "published": published, "transcoded": ours},
        "saving_cpu_ms_per_image_epoch": round(saving * 1000, 3),
        "break_even_epochs": round((1 / t) / saving, 2),
        "mean_kb_per_image": {"published_png": round(png_kb, 1), "transcoded_jpeg": round(jpg_kb, 1)},
        "kaggle_one_off_minutes_4_cores": round(NIH_IMAGES / (t * KAGGLE_CORES) / 60, 1),
        "kaggle_saving_cpu_seconds_per_epoch": round(EPOCH_IMAGES * saving),
        "loader_cores_at_2000_images_per_second": {"published": round(2000 / p, 1), "transcoded": round(2000 / o, 1)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
