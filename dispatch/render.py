"""Render the kernel folder (script + kernel-metadata.json) from the Jinja templates in `kernels/`.

StrictUndefined: a missing variable is an error, never an empty string. Python values enter the script through
the `py` filter (repr of plain data), JSON values through `tojson` — never string concatenation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = [
    "KAGGLE_SOURCE_LIMIT",
    "KernelSpec",
    "MetadataSpec",
    "RenderedKernel",
    "render_kernel",
    "render_metadata",
    "render_script",
    "render_template",
    "templates_dir",
]

KAGGLE_SOURCE_LIMIT = 1_000_000  # bytes; Kaggle refuses larger kernel sources
SCRIPT_NAME = "train.py"
METADATA_NAME = "kernel-metadata.json"


@dataclass(frozen=True)
class KernelSpec:
    """Variables of train.py.j2 (documented in kernels/README.md)."""

    run_id: str
    model: str
    bundle: bytes
    bundle_sha256: str
    data: dict[str, Any]  # {"kind": "hf"|"synthetic"|"kaggle"|"dir", ...}
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    time_budget: float | None = None
    split_scheme: str | None = None
    resume_source: str | None = None  # input folder name holding the parent run's output
    git_sha: str | None = None


@dataclass(frozen=True)
class MetadataSpec:
    """Variables of kernel-metadata.json.j2."""

    kernel_id: str  # owner/slug
    title: str
    machine_shape: str
    dataset_sources: list[str] = field(default_factory=list)
    kernel_sources: list[str] = field(default_factory=list)
    code_file: str = SCRIPT_NAME


@dataclass(frozen=True)
class RenderedKernel:
    folder: Path
    script: Path
    metadata: Path
    script_size: int


def templates_dir() -> Path:
    """Installed wheel: dispatch/kernels (force-included); source checkout: the repo's kernels/."""
    packaged = Path(__file__).resolve().parent / "kernels"
    if (packaged / "train.py.j2").is_file():
        return packaged
    repo = Path(__file__).resolve().parent.parent / "kernels"
    if (repo / "train.py.j2").is_file():
        return repo
    raise FileNotFoundError(f"kernel templates not found in {packaged} or {repo}")


def _defined(value: Any) -> Any:
    # Filters receive an Undefined instead of failing on it; make them fail like StrictUndefined does elsewhere.
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return value


def _tojson(value: Any) -> str:
    return json.dumps(_defined(value))


def _py_literal(value: Any) -> str:
    value = _defined(value)
    allowed = (str, int, float, bool, type(None), list, tuple, dict)
    if not isinstance(value, allowed):
        raise TypeError(f"cannot render {type(value).__name__} into the kernel script")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


@lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["py"] = _py_literal
    env.filters["tojson"] = _tojson  # plain json.dumps: the output is JSON, not HTML
    return env


def render_template(name: str, variables: dict[str, Any], folder: Path | None = None) -> str:
    """Render one template; a variable it uses that `variables` lacks raises jinja2.UndefinedError."""
    return _environment(str(folder or templates_dir())).get_template(name).render(**variables)


def render_script(spec: KernelSpec, folder: Path | None = None) -> str:
    b64 = base64.encodebytes(spec.bundle).decode("ascii").strip()
    variables = {
        "run_id": spec.run_id,
        "model": spec.model,
        "preset": spec.preset,
        "overrides": list(spec.overrides),
        "time_budget": spec.time_budget,
        "split_scheme": spec.split_scheme,
        "resume_source": spec.resume_source,
        "data": spec.data,
        "git_sha": spec.git_sha,
        "bundle_sha256": spec.bundle_sha256,
        "bundle_b64": b64,
    }
    return render_template("train.py.j2", variables, folder)


def render_metadata(spec: MetadataSpec, folder: Path | None = None) -> dict[str, Any]:
    variables = {
        "kernel_id": spec.kernel_id,
        "title": spec.title,
        "code_file": spec.code_file,
        "machine_shape": spec.machine_shape,
        "dataset_sources": spec.dataset_sources,
        "kernel_sources": spec.kernel_sources,
    }
    text = render_template("kernel-metadata.json.j2", variables, folder)
    data: dict[str, Any] = json.loads(text)
    return data


def render_kernel(out: Path, kernel: KernelSpec, metadata: MetadataSpec) -> RenderedKernel:
    """Write `out/train.py` and `out/kernel-metadata.json`. Size is checked by the caller (pre-flight)."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / metadata.code_file
    script.write_text(render_script(kernel), encoding="utf-8")
    meta_path = out / METADATA_NAME
    meta_path.write_text(json.dumps(render_metadata(metadata), indent=2) + "\n", encoding="utf-8")
    return RenderedKernel(folder=out, script=script, metadata=meta_path, script_size=script.stat().st_size)
