"""`chexvision bench loader`: input-pipeline throughput against the original pipeline (images/s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def loader(
    data: Annotated[Path, typer.Option("--data", help="Data folder with shards (e.g. from `chexvision data synth`).")],
    workers: Annotated[int, typer.Option(help="Worker processes (0 = this process: a per-core figure).")] = 0,
    batches: Annotated[int, typer.Option(help="Batches timed, after 2 warm-up batches.")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 32,
    mode: Annotated[str, typer.Option(help="Pipeline: cpu | gpu | auto (gpu when CUDA is available).")] = "auto",
    size: Annotated[int, typer.Option(help="Training image size in pixels.")] = 320,
    baseline: Annotated[bool, typer.Option(help="Also time the original PIL + torchvision v1 pipeline.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Images/s from shard bytes to an augmented batch, ours vs the original pipeline, in the same run."""
    from chexvision.data.bench import bench_loader
    from chexvision.errors import BadInputError

    if mode not in ("cpu", "gpu", "auto"):
        raise BadInputError(f"unknown --mode {mode!r}", "use --mode cpu, gpu or auto")
    result = bench_loader(
        data, workers=workers, batches=batches, batch_size=batch_size, mode=mode, size=size, baseline=baseline
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"input pipeline, {size} px, workers={workers}, batch {batch_size}")
    table.add_column("pipeline")
    table.add_column("images/s", justify="right")
    table.add_column("images/CPU-s", justify="right")
    per_cpu = result["images_per_cpu_second"]
    table.add_row(f"ours ({result['mode']})", f"{result['images_per_second']:.0f}", _num(per_cpu))
    if result["baseline_images_per_second"] is not None:
        base_cpu = result["baseline_images_per_cpu_second"]
        table.add_row("original", f"{result['baseline_images_per_second']:.0f}", _num(base_cpu))
    console = Console()
    console.print(table)
    if result["speedup"] is not None:
        console.print(f"speed-up: {result['speedup']:.2f}x")
    if result["gpu_augment"] == "skipped, no CUDA":
        console.print("gpu mode without CUDA: measured the CPU share only (decode + uint8 batch)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def register(app: typer.Typer) -> None:
    """Add `loader` to the `bench` sub-app."""
    app.command("loader")(loader)
