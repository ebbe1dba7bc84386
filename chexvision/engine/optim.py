"""AdamW with weight decay only where it belongs, a warm-up + cosine schedule per optimizer step, and phases.

A phase is a stretch of epochs with its own trainable parameters, peak learning rate and schedule: DenseNet
trains its heads on a frozen backbone (phase 1, `schedule.frozen_epochs` at `schedule.frozen_lr`), then
everything end to end (phase 2 at `optim.lr`). Every phase starts with a fresh optimizer and a new warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn, optim
from torch.optim.lr_scheduler import LambdaLR

from chexvision.config import OptimConfig, ScheduleConfig

__all__ = ["Phase", "build_optimizer", "build_scheduler", "param_groups", "phase_of_epoch", "plan_phases"]


@dataclass(frozen=True)
class Phase:
    index: int  # 1-based, what history.json records as "phase"
    first_epoch: int  # 1-based, inclusive
    last_epoch: int  # inclusive
    lr: float  # peak learning rate
    frozen_backbone: bool  # backbone parameters and BatchNorm statistics held fixed

    @property
    def epochs(self) -> int:
        return self.last_epoch - self.first_epoch + 1


def plan_phases(schedule: ScheduleConfig, optim_cfg: OptimConfig) -> list[Phase]:
    """Phase 1 (frozen backbone) when `frozen_epochs` > 0, then end-to-end training up to `epochs`."""
    frozen = min(schedule.frozen_epochs, schedule.epochs)
    phases = []
    if frozen > 0:
        phases.append(Phase(1, 1, frozen, schedule.frozen_lr, True))
    if schedule.epochs > frozen:
        phases.append(Phase(len(phases) + 1, frozen + 1, schedule.epochs, optim_cfg.lr, False))
    return phases


def phase_of_epoch(phases: list[Phase], epoch: int) -> Phase:
    for phase in phases:
        if phase.first_epoch <= epoch <= phase.last_epoch:
            return phase
    raise ValueError(f"epoch {epoch} is outside every phase")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Trainable parameters in two groups: decayed weights, and norms/biases (any tensor with ndim <= 1) without."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> optim.AdamW:
    groups: Iterable[dict[str, object]] = param_groups(model, cfg.weight_decay)
    return optim.AdamW(groups, lr=lr, betas=cfg.betas, eps=cfg.eps)


def build_scheduler(
    optimizer: optim.Optimizer, *, total_steps: int, warmup_steps: int, min_lr_ratio: float
) -> LambdaLR:
    """Linear warm-up from ~0 to the peak over `warmup_steps`, then cosine to `min_lr_ratio` x peak.

    Stepped once per optimizer step; `scheduler.base_lrs` are the phase's peak rates.
    """
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return min_lr_ratio + (1.0 - min_lr_ratio) * cosine

    return LambdaLR(optimizer, factor)
