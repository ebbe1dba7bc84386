"""`chexvision train`: resolve the config (preset -> --config -> --set -> flags), then run the training engine.

Default preset: `kaggle-t4` when training runs on CUDA (`--device cuda`, or `auto` with a GPU), else `smoke`.
With `--resume`, the run directory's config.json is the config (so a continued run trains what it started with);
`--set` overrides still apply on top, e.g. `--set schedule.epochs=80` to extend a finished run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chexvision.errors import BadInputError

if TYPE_CHECKING:
    from chexvision.config import TrainConfig


class ModelName(StrEnum):
    densenet = "densenet"
    seresnet = "seresnet"


class DeviceName(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _default_preset(device: str) -> str:
    import torch

    return "kaggle-t4" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "smoke"


def _flag_overrides(
    model: str, split_scheme: str | None, no_pretrained: bool, weights: Path | None, device: str, strict: bool
) -> list[str]:
    flags = [f"model.name={json.dumps(model)}", f"device={json.dumps(device)}"]
    if strict:
        flags.append("data.strict=true")
    if split_scheme is not None:
        flags.append(f"data.split_scheme={json.dumps(split_scheme)}")
    if no_pretrained:
        flags.append("model.pretrained=false")
    if weights is not None:
        if not weights.is_file():
            raise BadInputError(f"weights file {weights} not found", "pass an existing .pth/.safetensors file")
        flags.append(f"model.weights={json.dumps(str(weights))}")
    return flags


def resolve_train_config(
    *, out: Path, resume: bool, preset: str | None, config: Path | None, overrides: list[str], flags: list[str],
    model: str, device: str,
) -> TrainConfig:  # fmt: skip
    """A new run: preset, file, overrides, flags. A resumed run: its config.json, then overrides and flags."""
    from chexvision.config import TrainConfig, apply_overrides, load_config
    from chexvision.files import read_json_object

    saved = out / "config.json"
    if resume and saved.is_file():
        hint = f"fix or delete {saved}, or start a new run with another --out"
        cfg = TrainConfig.from_dict(read_json_object(saved, hint))
        if cfg.model.name != model:
            raise BadInputError(
                f"{out} is a {cfg.model.name} run, not {model}", f"resume it with --model {cfg.model.name}"
            )
        return apply_overrides(cfg, [*overrides, *flags])
    return load_config(preset or _default_preset(device), config, [*overrides, *flags])


def _progress_enabled(rank: int) -> bool:
    return rank == 0 and sys.stdout.isatty() and not os.environ.get("CI")


class _PlainReporter:
    """No TTY (Kaggle logs, CI): one summary line per epoch on stderr, nothing per step."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        self.total = total_epochs

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        if not self.silent:
            typer.echo(_summary(record, self.total), err=True)

    def close(self) -> None:
        pass


class _RichReporter:
    """An epoch bar and a step bar with loss, images/s and ETA; a summary line per epoch above them."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(), transient=True,
        )  # fmt: skip
        self.progress.start()
        self.epochs: Any = None
        self.steps: Any = None

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        self.total = total_epochs
        if self.epochs is None:
            self.epochs = self.progress.add_task("epochs", total=total_epochs, completed=epoch - 1, info="")
        if self.steps is not None:
            self.progress.remove_task(self.steps)
        self.steps = self.progress.add_task(f"epoch {epoch} (phase {phase})", total=steps, info="")

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        info = f"loss {loss:.4f}  lr {lr:.2e}  {images_per_second:.0f} img/s"
        self.progress.update(self.steps, completed=step, info=info)

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.progress.console.print(_summary(record, self.total))
        auc = record["val_macro_auc"]
        self.progress.update(self.epochs, advance=1, info=f"val macro AUC {'n/a' if auc is None else f'{auc:.4f}'}")

    def close(self) -> None:
        self.progress.stop()


def _summary(r: dict[str, Any], total: int) -> str:
    auc = "n/a" if r["val_macro_auc"] is None else f"{r['val_macro_auc']:.4f}"
    return (
        f"epoch {r['epoch']}/{total}  train_loss {r['train_loss']:.4f}  val_loss {r['val_loss']:.4f}  "
        f"val_macro_auc {auc}  {r['seconds']:.1f}s  {r['images_per_second']:.0f} img/s"
    )


def _make_reporter(rank: int) -> _PlainReporter | _RichReporter:
    if rank != 0:
        return _PlainReporter(silent=True)
    return _RichReporter() if _progress_enabled(rank) else _PlainReporter()


def register(app: typer.Typer) -> None:
    """Add `train` to `app`."""

    @app.command("train")
    def train(
        model: Annotated[ModelName, typer.Option(help="Architecture to train.")],
        data: Annotated[Path, typer.Option(help="Data directory (shards + optional dataset.json).")],
        out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
        preset: Annotated[
            str | None, typer.Option(help="smoke | kaggle-t4 | full (default: kaggle-t4 on CUDA, else smoke).")
        ] = None,
        config: Annotated[Path | None, typer.Option(help="TOML or JSON config applied after the preset.")] = None,
        set_: Annotated[
            list[str] | None, typer.Option("--set", help="Override a key: --set optim.lr=3e-4 (repeatable).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.ckpt.")] = False,
        time_budget: Annotated[
            float | None, typer.Option(help="Hours: stop cleanly after the last epoch that fits.", min=0.0)
        ] = None,
        split_scheme: Annotated[str | None, typer.Option(help="official | chexnet | patient.")] = None,
        no_pretrained: Annotated[
            bool,
            typer.Option(
                "--no-pretrained", help="Random initial weights (kaggle-t4, full: densenet starts from ImageNet)."
            ),
        ] = False,
        weights: Annotated[Path | None, typer.Option(help="Local pretrained-weights file.")] = None,
        run_id: Annotated[str | None, typer.Option(help="Run id (default: <model>-<utc time>-<hex>).")] = None,
        device: Annotated[DeviceName, typer.Option(help="cpu | cuda | auto.")] = DeviceName.auto,
        strict: Annotated[
            bool, typer.Option("--strict", help="Stop at a corrupt image (default: report it, skip it, count it).")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Train a model into a run directory (run.json, config.json, history.json, model.safetensors, ...)."""
        started = time.monotonic()
        flags = _flag_overrides(model.value, split_scheme, no_pretrained, weights, device.value, strict)
        cfg = resolve_train_config(
            out=out, resume=resume, preset=preset, config=config, overrides=list(set_ or []), flags=flags,
            model=model.value, device=device.value,
        )  # fmt: skip
        if not data.is_dir():
            raise BadInputError(f"data directory {data} not found", "make one: chexvision data synth --out DIR")
        result = _run(cfg, data, out, resume=resume, time_budget=time_budget, run_id=run_id, started=started)
        if result is None:
            return  # not rank 0
        if json_out:
            typer.echo(json.dumps(result))
            return
        from rich.console import Console

        auc = result["best_val_macro_auc"]
        Console().print(
            f"[bold]{result['status']}[/bold] ({result['stop_reason']}): {result['run_id']} in {result['run_dir']}; "
            f"best epoch {result['best_epoch']}, val macro AUC {'n/a' if auc is None else f'{auc:.4f}'}"
        )


def _run(
    cfg: TrainConfig, data: Path, out: Path, *, resume: bool, time_budget: float | None, run_id: str | None,
    started: float,
) -> dict[str, Any] | None:  # fmt: skip
    from chexvision.engine.distributed import cleanup_distributed, init_distributed
    from chexvision.engine.train import fit

    dist = init_distributed(cfg.device)
    reporter = _make_reporter(dist.rank)
    try:
        result = fit(
            cfg, data, out, resume=resume, time_budget_hours=time_budget, run_id=run_id,
            reporter=reporter, dist=dist, started=started,
        )  # fmt: skip
    finally:
        reporter.close()
        cleanup_distributed()
    if not dist.is_main:
        return None
    return {
        "status": result.status, "stop_reason": result.stop_reason, "run_id": result.run_id,
        "run_dir": str(result.run_dir), "best_epoch": result.best_epoch,
        "best_val_macro_auc": result.best_val_macro_auc, "epochs": len(result.history),
    }  # fmt: skip
