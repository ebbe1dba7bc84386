"""`chexvision bench train`: training-step throughput (forward + backward + AdamW) of one model."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `train` to the `bench` sub-app."""
    app.command("train")(bench_train)


def bench_train(
    model: Annotated[str, typer.Option("--model", help="Architecture (see `chexvision models`).")] = "densenet",
    size: Annotated[int, typer.Option("--size", help="Input side in pixels.")] = 320,
    batch: Annotated[int, typer.Option("--batch", help="Images per step.")] = 32,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision: bf16 where supported, else fp16.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory format.")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Timed steps.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps first (cuDNN autotune).")] = 5,
    tiny: Annotated[bool, typer.Option("--tiny", help="The tiny test variant (smoke test).")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cuda or cpu (default: cuda when available).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure images/s of full training steps on synthetic tensors on the current device."""
    from chexvision.models.bench import bench_train_step  # torch: only when the command runs

    result = bench_train_step(
        model,
        size=size,
        batch=batch,
        amp=amp,
        channels_last=channels_last,
        steps=steps,
        warmup=warmup,
        tiny=tiny,
        device=device,
    ).to_dict()
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console

    memory = f", peak {result['peak_memory_mib']:.0f} MiB" if result["peak_memory_mib"] is not None else ""
    layout = ", channels_last" if channels_last else ""
    Console().print(
        f"[bold]{result['model']}[/bold]{' (tiny)' if tiny else ''} {result['size']} px, "
        f"batch {result['batch']}, {result['dtype']}{layout} on {result['device_name']}: "
        f"[bold]{result['images_per_second']:.1f} images/s[/bold] "
        f"({result['ms_per_step']:.1f} ms/step{memory})"
    )
