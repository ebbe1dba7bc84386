"""`chexvision train`: options -> `chexvision.engine.launch` (config resolution, `fit`), and the progress display.

How the config is resolved (preset -> --config -> --set -> flags; a resumed run starts from its config.json) is
documented in `chexvision.engine.launch`. `--resume --run-id NEW` continues another run's directory as a new run
(what dispatch `--resume-from` does): run.json gets the new id and `parent_run_id`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class ModelName(StrEnum):
    densenet = "densenet"
    seresnet = "seresnet"


class DeviceName(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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
        run_id: Annotated[
            str | None,
            typer.Option(
                help="Run id (default: <model>-<utc time>-<hex>; with --resume the run's own, a new one "
                "continues it as a child run)."
            ),
        ] = None,
        device: Annotated[
            DeviceName | None, typer.Option(help="cpu | cuda | auto (default: the config's `device`, auto).")
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict", help="Stop at a corrupt image (default: report it, skip it, count it).")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Train a model into a run directory (run.json, config.json, history.json, model.safetensors, ...)."""
        from chexvision.engine.launch import flag_overrides, resolve_train_config, run_training

        started = time.monotonic()
        dev = device.value if device is not None else None
        flags = flag_overrides(model.value, split_scheme, no_pretrained, weights, dev, strict)
        cfg = resolve_train_config(
            out=out, resume=resume, preset=preset, config=config, overrides=list(set_ or []), flags=flags,
            model=model.value, device=dev,
        )  # fmt: skip
        result = run_training(
            cfg, data, out, resume=resume, time_budget=time_budget, run_id=run_id, make_reporter=_make_reporter,
            started=started,
        )  # fmt: skip
        if result is None:
            return  # not rank 0
        if json_out:
            typer.echo(json.dumps(result.to_dict()))
            return
        from rich.console import Console

        auc = result.best_val_macro_auc
        Console(soft_wrap=True).print(  # soft_wrap: the run directory stays whole (the terminal wraps it)
            f"[bold]{result.status}[/bold] ({result.stop_reason}): {result.run_id} in {result.run_dir}; "
            f"best epoch {result.best_epoch}, val macro AUC {'n/a' if auc is None else f'{auc:.4f}'}"
        )
