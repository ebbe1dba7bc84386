"""Typed values from TOML/JSON: check a parsed value against a dataclass field's annotation, parse `--set` literals.

The generic half of `chexvision.config` (no config classes here); config's errors name the dotted key.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from typing import Any, Literal

from chexvision.errors import BadInputError

__all__ = ["coerce", "merge", "parse_value"]


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = " | ".join(map(str, typing.get_args(tp)))
            raise BadInputError(f"config key {key!r} must be one of {choices}, got {value!r}", f"set {key}=...")
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except BadInputError:
                continue
        raise _bad_type(key, tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _bad_type(key, tp, value)
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _bad_type(key, tp, value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad_type(key, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_type(key, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_type(key, tp, value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad_type(key, tp, value)
        return value
    return value


def _bad_type(key: str, tp: Any, value: Any) -> BadInputError:
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return BadInputError(
        f"config key {key!r} expects {name}, got {value!r}", f"e.g. --set {key}=<{name}> (TOML/JSON literal)"
    )


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(raw: str, tp: Any, key: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    accepts_str = tp is str or (typing.get_origin(tp) in (types.UnionType, typing.Union) and str in typing.get_args(tp))
    if accepts_str and raw:
        return raw
    if typing.get_origin(tp) is Literal and raw in typing.get_args(tp):
        return raw
    raise BadInputError(f"malformed value {raw!r} for config key {key!r}", "use a TOML/JSON literal, e.g. 3e-4")
