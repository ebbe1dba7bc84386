"""Synthetic image rendering speed on ONE core (OpenCV limited to one thread), shard encoding measured apart.

    python benchmarks/synth_speed.py [--images 2000] [--size 320] [--seed 0]

Prints JSON: {"images_per_second", "size", "images", "wall_images_per_second", "encode_images_per_second",
"render_and_encode_images_per_second", "image_format"}. `images_per_second` divides by this process's CPU time
(one thread, so one core's worth of work, and stable on a machine other jobs share); `wall_images_per_second`
divides by elapsed time. The encode figures (CPU time too, in the shard format: JPEG q95) are what `data synth`
adds per image when it writes shards. Templates and the NIH label table are built before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2

from chexvision.data.shards import IMAGE_FORMAT, encode_image
from chexvision.data.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    list(generate(16, args.size, args.seed + 1))  # warm-up: templates and the label table are cached per process

    cpu, wall = time.process_time(), time.perf_counter()
    images = [s.image for s in generate(args.images, args.size, args.seed)]
    render_cpu, render_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu = time.process_time()
    for img in images:
        encode_image(img)
    encode_cpu = time.process_time() - cpu
    print(
        json.dumps(
            {
                "images_per_second": round(args.images / render_cpu, 1),
                "size": args.size,
                "images": args.images,
                "wall_images_per_second": round(args.images / render_wall, 1),
                "encode_images_per_second": round(args.images / encode_cpu, 1),
                "render_and_encode_images_per_second": round(args.images / (render_cpu + encode_cpu), 1),
                "image_format": IMAGE_FORMAT,
            }
        )
    )


if __name__ == "__main__":
    main()
