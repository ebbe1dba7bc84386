"""`chexvision bench loader|train`: input-pipeline and training-step throughput (thin skin over chexvision.bench).

Torch is imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def register(app: typer.Typer) -> None:
    """Add `loader` and `train` to the `bench` sub-app."""
    app.command("loader")(loader)
    app.command("train")(bench_train)


def loader(
    data: Annotated[Path, typer.Option("--data", help="Data folder with shards (e.g. from `chexvision data synth`).")],
    workers: Annotated[int, typer.Option(help="Worker processes (0 = this process: a per-core figure).")] = 0,
    batches: Annotated[int, typer.Option(help="Batches timed per pipeline per round, after 2 warm-up batches.")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 32,
    mode: Annotated[str, typer.Option(help="Pipeline: cpu | gpu | auto (gpu when CUDA is available).")] = "auto",
    size: Annotated[int, typer.Option(help="Training image size in pixels.")] = 320,
    rounds: Annotated[int, typer.Option(help="Rounds; each times every pipeline once, in turn (medians).")] = 3,
    baseline: Annotated[bool, typer.Option(help="Also time the original PIL + torchvision v1 pipeline.")] = True,
    albumentations: Annotated[
        bool, typer.Option(help="Also time our augmentations in albumentations 2.x (the dev extra).")
    ] = True,
    interpolation: Annotated[
        str, typer.Option(help="The augmentation warp's resampling: nearest (the default) | bilinear.")
    ] = "nearest",
    as_json: JsonOpt = False,
) -> None:
    """Images/s from shard bytes to an augmented batch: ours, the original pipeline and albumentations, interleaved."""
    from chexvision.bench.loader import bench_loader
    from chexvision.config import INTERPOLATIONS, AugConfig
    from chexvision.errors import UnknownName

    if interpolation not in INTERPOLATIONS:
        raise UnknownName("--interpolation", interpolation, INTERPOLATIONS)
    result = bench_loader(
        data, workers=workers, batches=batches, batch_size=batch_size, mode=mode, size=size, rounds=rounds,
        baseline=baseline, albumentations=albumentations, aug=AugConfig(interpolation=interpolation),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_loader(result, size=size, workers=workers, batch_size=batch_size)


def _print_loader(result: dict[str, Any], *, size: int, workers: int, batch_size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"input pipeline, {size} px, workers={workers}, batch {batch_size}, {result['rounds']} rounds")
    table.add_column("pipeline")
    table.add_column("images/s", justify="right")
    table.add_column("images/CPU-s", justify="right")
    table.add_column("ours is", justify="right")
    table.add_row(f"ours ({result['mode']}, {result['interpolation']})", f"{result['images_per_second']:.0f}",
                  _num(result["images_per_cpu_second"]), "")  # fmt: skip
    for name, key in (("albumentations", "albumentations"), ("original", "baseline")):
        if result[f"{key}_images_per_second"] is not None:
            speedup = result["speedup" if key == "baseline" else "albumentations_speedup"]
            table.add_row(name, f"{result[f'{key}_images_per_second']:.0f}",
                          _num(result[f"{key}_images_per_cpu_second"]), f"{speedup:.2f}x")  # fmt: skip
    table.add_row("decode only", "", _num(result["decode_only_images_per_cpu_second"]), "")
    console = Console()
    console.print(table)
    if result["decode_fraction"] is not None:
        console.print(f"ours runs at {100 * result['decode_fraction']:.0f} % of the decoder's speed per core")
    if result["gpu_augment"] == "skipped, no CUDA":
        console.print("gpu mode without CUDA: measured the CPU share only (decode + uint8 batch)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def bench_train(
    model: Annotated[str, typer.Option("--model", help="Architecture (see `chexvision models`).")] = "densenet",
    size: Annotated[int, typer.Option("--size", help="Input side in pixels.")] = 320,
    batch: Annotated[int, typer.Option("--batch-size", help="Images per step.")] = 32,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision: bf16 where supported, else fp16.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory format.")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Timed steps.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps first (cuDNN autotune).")] = 5,
    tiny: Annotated[bool, typer.Option("--tiny", help="The tiny test variant (smoke test).")] = False,
    compile_mode: Annotated[
        str | None,
        typer.Option("--compile", help="torch.compile mode: default | reduce-overhead | max-autotune (off if unset)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto (cuda when available).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    batch_alias: Annotated[int | None, typer.Option("--batch", hidden=True, help="Old name of --batch-size.")] = None,
) -> None:
    """Measure images/s of full training steps on synthetic tensors on the current device."""
    from chexvision.bench.train_step import bench_train_step  # torch: only when the command runs

    result = bench_train_step(
        model,
        size=size,
        batch=batch if batch_alias is None else batch_alias,
        amp=amp,
        channels_last=channels_last,
        steps=steps,
        warmup=warmup,
        tiny=tiny,
        device=device,
        compile_mode=compile_mode,
    ).to_dict()
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console

    memory = f", peak {result['peak_memory_mib']:.0f} MiB" if result["peak_memory_mib"] is not None else ""
    layout = (", channels_last" if channels_last else "") + (f", compiled ({compile_mode})" if compile_mode else "")
    Console().print(
        f"[bold]{result['model']}[/bold]{' (tiny)' if tiny else ''} {result['size']} px, "
        f"batch {result['batch']}, {result['dtype']}{layout} on {result['device_name']}: "
        f"[bold]{result['images_per_second']:.1f} images/s[/bold] "
        f"({result['ms_per_step']:.1f} ms/step{memory})"
    )
