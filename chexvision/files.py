"""JSON and text files: atomic writes (a temporary sibling, then a rename) and a checked JSON-object reader.

A reader (a resumed build, dispatch fetch, a killed run) sees the old file or the new one, never half of one. The
temporary name is hidden and carries the pid, so two processes writing the same folder do not share it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError

__all__ = ["atomic_write_text", "read_json_object", "tmp_sibling", "write_json_atomic"]


def tmp_sibling(path: Path) -> Path:
    """The temporary name `path` is written under before the rename (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns `path`."""
    tmp = tmp_sibling(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Indented strict JSON (NaN is an error: other tools cannot read it), written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def read_json_object(path: Path, hint: str = "is this a complete run directory?") -> dict[str, Any]:
    """A JSON file that must hold an object; a missing, unreadable or malformed one is a BadInputError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path} not found", hint) from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}", hint) from exc
    if not isinstance(data, dict):
        raise BadInputError(f"{path} is not a JSON object", hint)
    return data
