"""Training state shared by the loop: progress hooks, the result of `fit`, and the per-process `Trainer`."""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from chexvision.config import TrainConfig
from chexvision.engine.distributed import DistInfo
from chexvision.engine.loss import CheXLoss
from chexvision.engine.optim import Phase, build_optimizer, build_scheduler
from chexvision.errors import BadInputError

__all__ = ["FitResult", "NullReporter", "Reporter", "Trainer", "environment_info", "resolve_amp"]


class Reporter(Protocol):
    """Progress hooks; the CLI draws rich bars with them. Called on every rank (the CLI filters)."""

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        """Before the first step of `epoch` (1-based) with `steps` optimizer steps."""

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        """After optimizer step `step` (1-based within the epoch); `lr` is the rate that step used."""

    def end_epoch(self, record: dict[str, Any]) -> None:
        """After validation, with the epoch's history.json record."""

    def close(self) -> None:
        """After training, however it ended (`chexvision.engine.launch.run_training` calls it)."""


class NullReporter:
    """Reports nothing (library default)."""

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        pass

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class FitResult:
    status: str  # complete | incomplete
    stop_reason: str  # epochs | early_stop | time_budget | already_complete
    run_dir: Path
    run_id: str
    best_epoch: int | None
    best_val_macro_auc: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What `chexvision train --json` prints."""
        return {
            "status": self.status, "stop_reason": self.stop_reason, "run_id": self.run_id,
            "run_dir": str(self.run_dir), "best_epoch": self.best_epoch,
            "best_val_macro_auc": self.best_val_macro_auc, "epochs": len(self.history),
        }  # fmt: skip


@dataclass
class Trainer:
    """One process's training state: the model, its DDP wrapper and the current phase's optimizer and schedule."""

    cfg: TrainConfig
    dist: DistInfo
    model: nn.Module
    loss_fn: CheXLoss
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    net: nn.Module | None = None
    phase: Phase | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    scaler: torch.amp.GradScaler | None = None

    def enter_phase(self, phase: Phase) -> None:
        """Freeze or unfreeze, wrap for DDP (its parameter set changes with freezing), fresh optimizer + schedule."""
        freeze = getattr(self.model, "freeze_backbone", None)
        if phase.frozen_backbone and freeze is None:
            raise BadInputError(f"{self.cfg.model.name} cannot freeze its backbone", "set schedule.frozen_epochs=0")
        if freeze is not None:
            freeze(phase.frozen_backbone)
        self.phase = phase
        self.net = self.model
        if self.dist.enabled:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        opt = self.cfg.optim
        self.optimizer = build_optimizer(self.model, opt, phase.lr)
        warmup = opt.warmup_steps or round(opt.warmup_epochs * self.steps_per_epoch)
        total = phase.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, total_steps=total, warmup_steps=warmup,
                                         min_lr_ratio=opt.min_lr_ratio)  # fmt: skip
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=self.amp_dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.amp_dtype)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """off | fp16 | bf16 | auto -> autocast dtype or None. auto: bf16 where native, else fp16; CPU: off."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda" and mode == "fp16":
        raise BadInputError("optim.amp=fp16 needs a CUDA device", "use --set optim.amp=off (or bf16) on CPU")
    if mode == "auto":
        try:
            native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch has no emulation flag (and a T4 would claim bf16)
            native_bf16 = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native_bf16 else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def environment_info() -> dict[str, Any]:
    """run.json "env": Python, torch, CUDA and the GPUs this process sees."""
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}
