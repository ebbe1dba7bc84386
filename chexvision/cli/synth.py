"""`chexvision data synth`: write the synthetic data set (thin command over chexvision.data.synthetic; no torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

_console = Console(soft_wrap=True)


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output data folder (shards go to OUT/data/).")],
    images: Annotated[int, typer.Option("--images", help="Number of images.")] = 2000,
    size: Annotated[int, typer.Option("--size", help="Side length in pixels (32-2048).")] = 320,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed writes byte-identical rows.")] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (0: all cores); the output does not depend on it.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout.")] = False,
) -> None:
    """Write synthetic chest X-rays with planted findings, NIH-style bbox.csv and dataset.json."""
    from chexvision.data.synthetic import write_synthetic

    result = write_synthetic(out, images, size, seed, workers=workers or (os.cpu_count() or 1))
    summary = {
        "out": str(result.out),
        "images": result.images,
        "size": result.size,
        "seed": result.seed,
        "shards": [str(p) for p in result.shards],
        "bbox_csv": str(result.bbox_csv),
        "boxes": result.boxes,
        "seconds": round(result.seconds, 2),
        "label_counts": result.label_counts,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"synthetic data: {result.images:,} images at {result.size} px (seed {result.seed})")
    table.add_column("label")
    table.add_column("images", justify="right")
    for name, count in sorted(result.label_counts.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{count:,}")
    _console.print(table)
    _console.print(
        f"wrote {len(result.shards)} shard(s) to {result.out / 'data'}, {result.boxes:,} boxes to {result.bbox_csv} "
        f"in {result.seconds:.1f} s"
    )
    _console.print(f"next: chexvision train --model densenet --data {result.out} --preset smoke")


def register(app: typer.Typer) -> None:
    """Add `synth` to the `data` sub-app."""
    app.command("synth")(synth)
