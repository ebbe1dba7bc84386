"""The one device rule: `auto` = CUDA when available, else the CPU; an unavailable request is a one-line error.

Torch is imported inside the function, so the CLI can import this module to validate `--device` cheaply and every
layer (models, engine, inference, bench, evaluate) can use it without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chexvision.errors import BadInputError, UnknownName

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "check_device_name", "resolve_device"]

DEVICES = ("cpu", "cuda", "auto")  # what --device and the `device` config key accept


def check_device_name(name: str) -> str:
    """`name` if it is one of DEVICES (no torch import); else UnknownName (exit 2)."""
    if name not in DEVICES:
        raise UnknownName("device", name, DEVICES, hint="choose cpu, cuda or auto")
    return name


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """cpu | cuda | auto -> a torch.device (auto: cuda when available, else cpu).

    A torch.device passes through the same availability check and keeps its index (`cuda:1`). An unknown name is
    UnknownName, CUDA asked for where there is none is BadInputError: exit 2, one line, before any work starts.
    """
    import torch

    if isinstance(name, torch.device):
        resolve_device(name.type)
        return name
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device cuda asked for, but CUDA is not available", "use --device cpu or auto")
    return torch.device(name)
