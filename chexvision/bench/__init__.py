"""Benchmarks that measure: the input pipeline (`loader.bench_loader`) and the training step
(`train_step.bench_train_step`). `chexvision bench loader|train` and `benchmarks/*.py` call these.

Names are imported lazily: both modules import torch, and the CLI must stay torch-free until a command runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chexvision.bench.loader import LOADER_MODES as LOADER_MODES
    from chexvision.bench.loader import bench_loader as bench_loader
    from chexvision.bench.train_step import TrainStepResult as TrainStepResult
    from chexvision.bench.train_step import bench_train_step as bench_train_step

__all__ = ["LOADER_MODES", "TrainStepResult", "bench_loader", "bench_train_step"]

_WHERE = {
    "LOADER_MODES": "chexvision.bench.loader",
    "bench_loader": "chexvision.bench.loader",
    "TrainStepResult": "chexvision.bench.train_step",
    "bench_train_step": "chexvision.bench.train_step",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
