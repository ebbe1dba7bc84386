"""How the training step runs fast: memory format (channels_last) and `torch.compile`, from the config's settings.

- `channels_last` ("auto" | true | false): NHWC weights and batches. "auto" is on everywhere: on CUDA (cuDNN's
  fast convolution and batch-norm kernels are NHWC, with AMP), and on CPU, where `benchmarks/train_step.py
  --interleave channels_last` measured DenseNet and SE-ResNet faster with it at 64 and 128 px (both the full
  models and the smoke preset's small variants; BENCHMARKS.md, "Training step on CPU").
- `compile` ("auto" | true | false | a mode): `torch.compile(model, mode=...)`. "auto" compiles on CUDA with mode
  "default" and never on CPU (the compile costs tens of seconds there and the smoke runs last ~30 s). The
  compiled module shares its parameters with the model, so the optimizer, checkpoints and `state_dict` keys are
  unchanged; it is used for the training forward pass only (evaluation runs the plain model: no recompilation for
  eval mode or a ragged last batch).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from chexvision.config import COMPILE_MODES
from chexvision.errors import BadInputError

__all__ = ["compile_model", "resolve_channels_last", "resolve_compile"]

log = logging.getLogger(__name__)


def resolve_channels_last(setting: bool | str, device: torch.device) -> bool:
    """Whether weights and batches use channels_last on `device` ("auto": yes on CUDA and on CPU, as measured)."""
    if setting == "auto":
        return device.type in ("cuda", "cpu")
    if isinstance(setting, bool):
        return setting
    raise BadInputError(f"channels_last must be true, false or auto, got {setting!r}", "set channels_last=auto")


def resolve_compile(setting: bool | str, device: torch.device) -> str | None:
    """The torch.compile mode to use on `device`, or None for eager ("auto": "default" on CUDA, eager on CPU)."""
    if setting == "auto":
        return "default" if device.type == "cuda" else None
    if setting is False:
        return None
    if setting is True:
        return "default"
    if isinstance(setting, str) and setting in COMPILE_MODES:
        return setting
    raise BadInputError(
        f"compile must be true, false, auto or one of {', '.join(COMPILE_MODES)}, got {setting!r}",
        "set compile=auto (compiles on CUDA only)",
    )


def compile_model(model: nn.Module | None, mode: str | None) -> Any:
    """`torch.compile(model, mode=mode)`, or the model itself when `mode` is None (or there is no model)."""
    if mode is None or model is None:
        return model
    log.info("torch.compile(mode=%r): the first training steps include the compilation", mode)
    return torch.compile(model, mode=mode)
