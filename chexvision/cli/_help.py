"""The help text's value column, one policy for every command: flags show no type (`--json`, not `--json <bool>`),
a repeatable option or a variadic argument shows its element type (`--set <str>`, `images <path>...`), not Python's
`<list[str]>`. Typer 0.2x prints its own type labels; `install()` replaces that one method on its parameter classes.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperOption

_LIST = re.compile(r"<list\[(?P<inner>[^\]]+)\]>")
_ORIGINAL = {TyperOption: TyperOption.display_type_rich, TyperArgument: TyperArgument.display_type_rich}


def _element_label(match: re.Match[str]) -> str:
    inner = match.group("inner")
    return f"<{'path' if inner in ('Path', 'PosixPath') else inner}>"


def _display_type(param: Any, ctx: Any) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None  # a flag takes no value
    original = _ORIGINAL[TyperArgument if isinstance(param, TyperArgument) else TyperOption]
    label = original(param, ctx)
    return None if label is None else _LIST.sub(_element_label, label)


def install() -> None:
    """Idempotent: route both parameter classes' help type through `_display_type`."""
    for cls in _ORIGINAL:
        setattr(cls, "display_type_rich", _display_type)  # noqa: B010 (a method of another package's class)
