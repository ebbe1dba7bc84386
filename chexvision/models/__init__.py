"""The model zoo: `create_model(name, ...)` over a registry of `ModelInfo`; every model has the same surface.

Importing this package is torch-free: the registry reads each model module's `MODEL_INFO` without importing the
module, so `list_models()` and `get_model_info(name)` serve the CLI and the dispatch side without torch. The
builders (and torch) are imported when `create_model` runs; `CheXModel`, `DualHead` and `FEATURE_DIM` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chexvision.models.registry import (
    BUFFER_SUFFIXES,
    ModelInfo,
    build_from_config,
    count_state_parameters,
    create_model,
    get_model_info,
    list_models,
    model_config,
    model_summary,
    register_model,
    tiny_kwargs,
)

if TYPE_CHECKING:
    from chexvision.models.heads import FEATURE_DIM as FEATURE_DIM
    from chexvision.models.heads import CheXModel as CheXModel
    from chexvision.models.heads import DualHead as DualHead
    from chexvision.models.heads import count_parameters as count_parameters

__all__ = [
    "BUFFER_SUFFIXES",
    "FEATURE_DIM",
    "CheXModel",
    "DualHead",
    "ModelInfo",
    "build_from_config",
    "count_parameters",
    "count_state_parameters",
    "create_model",
    "get_model_info",
    "list_models",
    "model_config",
    "model_summary",
    "register_model",
    "tiny_kwargs",
]

_FROM_HEADS = ("FEATURE_DIM", "CheXModel", "DualHead", "count_parameters")  # these import torch


def __getattr__(name: str) -> Any:
    if name in _FROM_HEADS:
        from chexvision.models import heads

        return getattr(heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
