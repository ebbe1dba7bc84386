"""Files: atomic writes (a temporary sibling, then a rename), a checked JSON-object reader, content hashes, the
torch-free safetensors header check, and what a full disk looks like.

A reader (a resumed build, dispatch fetch, a killed run) sees the old file or the new one, never half of one. The
temporary name is hidden and carries the pid, so two processes writing the same folder do not share it; a write
that fails removes its temporary file, and `remove_stale_tmps` clears those a killed process left behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError

__all__ = [
    "SafetensorsHeaderError",
    "atomic_write_text",
    "is_disk_full",
    "json_text",
    "read_json_object",
    "remove_stale_tmps",
    "safetensors_header",
    "sha256_file",
    "tmp_sibling",
    "write_json_atomic",
]

_TMP_RE = re.compile(r"^\..+\.\d+\.tmp$")  # what tmp_sibling makes
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def tmp_sibling(path: Path) -> Path:
    """The temporary name `path` is written under before the rename (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC (no space left) or EDQUOT (quota exceeded): the errors freeing space fixes."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def remove_stale_tmps(folder: Path) -> list[str]:
    """Remove the temporary files (`tmp_sibling` names) another process left in `folder`; returns their names."""
    removed = []
    mine = f".{os.getpid()}.tmp"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if _TMP_RE.match(path.name) and not path.name.endswith(mine) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns `path`. A failed write leaves `path` and no temporary file."""
    tmp = tmp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """Indented strict JSON (NaN is an error: other tools cannot read it) with a final newline."""
    return json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> Path:
    """`json_text(data)`, written atomically."""
    return atomic_write_text(path, json_text(data, sort_keys=sort_keys))


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


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class SafetensorsHeaderError(ValueError):
    """A safetensors file whose header cannot be read (the message names the file)."""


def safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """(JSON header, header length) of a safetensors file, read without torch or numpy."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsHeaderError(f"{path.name} is truncated")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise SafetensorsHeaderError(f"{path.name} has an impossible header length")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise SafetensorsHeaderError(f"{path.name} header is not JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"{path.name} header is not a JSON object")
    return header, n
