"""Model registry: builders are registered by name, created by name, and rebuilt from a JSON config.

A run's config.json stores `{"name": ..., "kwargs": {...}}` (from `model_config`); `build_from_config`
rebuilds the same architecture without downloading anything, and the caller then loads the trained state dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from torch import nn

from chexvision.errors import BadInputError
from chexvision.labels import NUM_LABELS
from chexvision.models.heads import CheXModel

__all__ = [
    "build_from_config",
    "count_parameters",
    "create_model",
    "list_models",
    "model_config",
    "model_summary",
    "register_model",
    "tiny_kwargs",
]

Builder = Callable[..., CheXModel]
_B = TypeVar("_B", bound=Builder)

# Arguments that only say where the initial weights come from: never part of a rebuildable config.
_WEIGHT_ARGS = ("pretrained", "weights")


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    summary: str  # first docstring line, shown by `chexvision models`
    tiny: dict[str, Any] = field(default_factory=dict)  # kwargs for a seconds-fast variant (tests, --tiny)


_REGISTRY: dict[str, _Entry] = {}


@overload
def register_model(fn: _B, /) -> _B: ...
@overload
def register_model(*, name: str | None = None, tiny: Mapping[str, Any] | None = None) -> Callable[[_B], _B]: ...
def register_model(
    fn: _B | None = None, /, *, name: str | None = None, tiny: Mapping[str, Any] | None = None
) -> _B | Callable[[_B], _B]:
    """Register a builder `fn(*, pretrained, weights, **kwargs) -> nn.Module` under `name` (default: fn name).

    Use bare (`@register_model`) or with arguments (`@register_model(tiny={...})`). A duplicate name raises.
    Builders return a `CheXModel`, so every model has the same surface (forward_features, forward_head, ...).
    """

    def decorate(builder: _B) -> _B:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[key] = _Entry(builder, summary, dict(tiny or {}))
        return builder

    return decorate(fn) if fn is not None else decorate


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInputError(
            f"unknown model {name!r} (valid: {', '.join(list_models())})",
            "list them with `chexvision models`",
        ) from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def tiny_kwargs(name: str) -> dict[str, Any]:
    """Kwargs for a tiny variant of `name`: same code paths, a few thousand parameters, fast at 64 px."""
    return dict(_entry(name).tiny)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    num_classes: int = NUM_LABELS,
    **kwargs: Any,
) -> CheXModel:
    """Build model `name`. `pretrained`: ImageNet weights where the model has them; `weights`: a local file.

    The returned model carries `model.model_cfg` (see `model_config`) so the run can store how to rebuild it.
    """
    builder = _entry(name).builder
    try:
        model = builder(pretrained=pretrained, weights=weights, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise BadInputError(
            f"{name} does not take that argument ({exc})",
            f"check model.kwargs; a known-good set is `{json.dumps(tiny_kwargs(name))}`",
        ) from None
    cfg_kwargs = dict(kwargs)
    if num_classes != NUM_LABELS:
        cfg_kwargs["num_classes"] = num_classes
    model.model_cfg = model_config(name, cfg_kwargs)
    return model


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def model_config(model_or_name: nn.Module | str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`{"name": str, "kwargs": {...}}`, JSON-serialisable, without weight-source arguments.

    Pass a model made by `create_model` (its stored config), or a name and the kwargs it was built with.
    """
    if isinstance(model_or_name, nn.Module):
        cfg = getattr(model_or_name, "model_cfg", None)
        if cfg is None:
            raise BadInputError(
                f"{type(model_or_name).__name__} has no model config", "build models with create_model()"
            )
        return {"name": cfg["name"], "kwargs": dict(cfg["kwargs"])}
    name = model_or_name
    _entry(name)
    clean = {k: _jsonable(v) for k, v in (kwargs or {}).items() if k not in _WEIGHT_ARGS}
    try:
        json.dumps(clean)
    except TypeError as exc:
        raise BadInputError(f"model kwargs for {name!r} are not JSON-serialisable: {exc}", "pass plain values") from exc
    return {"name": name, "kwargs": clean}


def build_from_config(model_cfg: Mapping[str, Any]) -> CheXModel:
    """Rebuild the architecture `model_config(...)` describes; never downloads (weights come from the run)."""
    if not isinstance(model_cfg, Mapping) or "name" not in model_cfg:
        raise BadInputError(
            f"model config {model_cfg!r} has no 'name'",
            'expected {"name": ..., "kwargs": {...}} in config.json',
        )
    kwargs = {k: v for k, v in dict(model_cfg.get("kwargs") or {}).items() if k not in _WEIGHT_ARGS}
    return create_model(str(model_cfg["name"]), pretrained=False, weights=None, **kwargs)


def count_parameters(name: str, **kwargs: Any) -> int:
    """Parameter count of `name` built with `kwargs`, on the meta device (no memory, no init cost)."""
    import torch

    with torch.device("meta"):
        model = create_model(name, pretrained=False, weights=None, **kwargs)
    return sum(p.numel() for p in model.parameters())


def model_summary() -> list[dict[str, Any]]:
    """One row per registered model: name, full-size parameter count, one-line description."""
    return [
        {"name": name, "params": count_parameters(name), "description": _REGISTRY[name].summary}
        for name in list_models()
    ]
