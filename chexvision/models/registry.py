"""Model registry: one `ModelInfo` per architecture, created by name, rebuilt from a JSON config. Torch-free.

Each model module of this package declares its facts as a module-level `MODEL_INFO = ModelInfo(...)` with literal
values (builder path, card text, base model, how pretrained weights load, full-size parameter count). The registry
reads those declarations from the modules' source with `ast` instead of importing them, because the modules
import torch: listing models (`list_models`, `get_model_info`, `chexvision models`, the dispatch side) stays
torch-free, and a builder is imported only when `create_model` runs. Adding a model is one file (the network, its
builder and its `MODEL_INFO`) plus its preset sections.

A run's config.json stores `{"name": ..., "kwargs": {...}}` (from `model_config`); `build_from_config` rebuilds
the same architecture without downloading anything, and the caller then loads the trained state dict.
"""

from __future__ import annotations

import ast
import importlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.labels import NUM_LABELS

if TYPE_CHECKING:
    from chexvision.models.heads import CheXModel

__all__ = [
    "BUFFER_SUFFIXES",
    "ModelInfo",
    "build_from_config",
    "count_state_parameters",
    "create_model",
    "get_model_info",
    "list_models",
    "model_config",
    "model_summary",
    "read_model_info",
    "register_model",
    "tiny_kwargs",
]

# Arguments that only say where the initial weights come from: never part of a rebuildable config.
_WEIGHT_ARGS = ("pretrained", "weights")
# State-dict entries that are buffers, not parameters (BatchNorm statistics): never counted as parameters.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_PACKAGE = "chexvision.models"
_DECLARATION = "MODEL_INFO"


@dataclass(frozen=True)
class ModelInfo:
    """What the project knows about one architecture without building it."""

    name: str  # registry name: `--model`, config.json `model.name`
    builder: str  # "module:function" -> `fn(*, pretrained, weights, num_classes, **kwargs) -> CheXModel`
    summary: str  # one line for `chexvision models`
    description: str  # the model card's architecture sentence; `{dropout}` is filled from the run's drop_rate
    params: int  # full-size parameter count (parameters only, no BatchNorm buffers); a test recounts it
    drop_rate: float  # the builder's default dropout, shown when a run's kwargs set none
    base_model: str | None = None  # Hub id of the weights `pretrained=True` starts from; None: from scratch
    pretrained: str | None = None  # how pretrained weights load (the card's sentence); None: no pretrained weights
    tiny: Mapping[str, Any] = field(default_factory=dict)  # kwargs of a seconds-fast variant (tests, smoke runs)


_REGISTRY: dict[str, ModelInfo] = {}
_SCANNED = False


def read_model_info(source: str, where: str) -> ModelInfo | None:
    """The `MODEL_INFO = ModelInfo(...)` declared at the top level of a module's `source`, or None.

    Its arguments must be literals (strings, numbers, None, tuples, dicts): they are evaluated without running the
    module. `where` names the module in errors.
    """
    for node in ast.parse(source, filename=where).body:
        call: ast.expr | None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, call = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, call = node.target, node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id == _DECLARATION):
            continue
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "ModelInfo"):
            raise TypeError(f"{where}: {_DECLARATION} must be a ModelInfo(...) call")
        if call.args or any(kw.arg is None for kw in call.keywords):
            raise TypeError(f"{where}: {_DECLARATION} takes keyword arguments only")
        try:
            kwargs = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
        except ValueError as exc:
            raise TypeError(f"{where}: {_DECLARATION} arguments must be literals ({exc})") from None
        return ModelInfo(**kwargs)
    return None


def _add(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def _registry() -> dict[str, ModelInfo]:
    """The registry, filled on first use from the package's model modules (never at import)."""
    global _SCANNED
    if not _SCANNED:
        _SCANNED = True
        for entry in sorted(resources.files(_PACKAGE).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py") and not entry.name.startswith("_"):
                source = entry.read_text(encoding="utf-8")
                if _DECLARATION in source and (info := read_model_info(source, entry.name)) is not None:
                    _add(info)
    return _REGISTRY


def register_model(info: ModelInfo) -> ModelInfo:
    """Register a model defined outside this package (its builder is imported lazily). A duplicate name raises."""
    _registry()
    return _add(info)


def get_model_info(name: str) -> ModelInfo:
    """The facts of model `name`; an unknown name is a BadInputError listing the valid ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise BadInputError(
            f"unknown model {name!r} (valid: {', '.join(list_models())})",
            "list them with `chexvision models`",
        ) from None


def list_models() -> list[str]:
    return sorted(_registry())


def tiny_kwargs(name: str) -> dict[str, Any]:
    """Kwargs for a tiny variant of `name`: same code paths, a few thousand parameters, fast at 64 px."""
    return dict(get_model_info(name).tiny)


def _builder(info: ModelInfo) -> Callable[..., CheXModel]:
    module, _, attr = info.builder.partition(":")
    fn: Callable[..., CheXModel] = getattr(importlib.import_module(module), attr)
    return fn


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
    builder = _builder(get_model_info(name))
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


def model_config(model_or_name: CheXModel | str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`{"name": str, "kwargs": {...}}`, JSON-serialisable, without weight-source arguments.

    Pass a model made by `create_model` (its stored config), or a name and the kwargs it was built with.
    """
    if not isinstance(model_or_name, str):
        cfg = getattr(model_or_name, "model_cfg", None)
        if cfg is None:
            raise BadInputError(
                f"{type(model_or_name).__name__} has no model config", "build models with create_model()"
            )
        return {"name": cfg["name"], "kwargs": dict(cfg["kwargs"])}
    name = model_or_name
    get_model_info(name)
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


def count_state_parameters(tensors: Mapping[str, Mapping[str, Any]]) -> int:
    """Parameters in a state dict described as {name: {"shape": [...]}} (a safetensors header), buffers left out.

    Torch-free: what the model card counts from `model.safetensors`, equal to `sum(p.numel() for p in
    model.parameters())` for every registered model (BatchNorm's running statistics are buffers, not parameters).
    """
    return sum(
        math.prod(entry["shape"])
        for key, entry in tensors.items()
        if key != "__metadata__" and not key.endswith(BUFFER_SUFFIXES)
    )


def model_summary() -> list[dict[str, Any]]:
    """One row per registered model: name, full-size parameter count, description, base model. Torch-free."""
    rows = []
    for name in list_models():
        info = get_model_info(name)
        rows.append({"name": name, "params": info.params, "description": info.summary, "base_model": info.base_model})
    return rows
