"""The model zoo: `create_model(name, ...)` over a registry of builders; every model has the same surface.

Importing this package registers the built-in models (`densenet`, `seresnet`).
"""

from __future__ import annotations

from chexvision.models import densenet as _densenet  # noqa: F401  (registers the model)
from chexvision.models import se_resnet as _se_resnet  # noqa: F401
from chexvision.models.heads import FEATURE_DIM, CheXModel, DualHead
from chexvision.models.registry import (
    build_from_config,
    count_parameters,
    create_model,
    list_models,
    model_config,
    model_summary,
    register_model,
    tiny_kwargs,
)

__all__ = [
    "FEATURE_DIM",
    "CheXModel",
    "DualHead",
    "build_from_config",
    "count_parameters",
    "create_model",
    "list_models",
    "model_config",
    "model_summary",
    "register_model",
    "tiny_kwargs",
]
