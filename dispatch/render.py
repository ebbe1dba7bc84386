"""Render kernel files from the Jinja templates in `kernels/`: the job script every backend runs, plus whatever a
backend adds (Kaggle: kernel-metadata.json, rendered by the Kaggle backend with `render_template`).

StrictUndefined: a missing variable is an error, never an empty string. Python values enter the script through
the `py` filter (repr of plain data), JSON values through `tojson` — never string concatenation.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from dispatch.bundle import Bundle
from dispatch.job import JobSpec

__all__ = [
    "SCRIPT_NAME",
    "RenderedKernel",
    "render_script",
    "render_template",
    "script_variables",
    "templates_dir",
    "write_script",
]

SCRIPT_NAME = "train.py"  # the script's file name in the kernel folder (Kaggle's `code_file`)
TEMPLATE = "train.py.j2"


@dataclass(frozen=True)
class RenderedKernel:
    folder: Path
    script: Path
    script_size: int
    extra: tuple[Path, ...] = field(default_factory=tuple)  # backend files written beside it (kernel-metadata.json)


def templates_dir() -> Path:
    """Installed wheel: dispatch/kernels (force-included); source checkout: the repo's kernels/."""
    packaged = Path(__file__).resolve().parent / "kernels"
    if (packaged / TEMPLATE).is_file():
        return packaged
    repo = Path(__file__).resolve().parent.parent / "kernels"
    if (repo / TEMPLATE).is_file():
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


def script_variables(
    job: JobSpec, bundle: Bundle, *, git_sha: str | None, resume_source: str | None = None
) -> dict[str, Any]:
    """The variables of train.py.j2 (documented in kernels/README.md)."""
    return {
        "run_id": job.run_id,
        "label": job.label,
        "steps": [dataclasses.asdict(step) for step in job.steps],
        "data": {"kind": job.data.kind, "reference": job.data.reference, "details": dict(job.data.details)},
        "status_file": job.outputs.status_file,
        "incomplete_reason": job.outputs.incomplete_reason,
        "time_budget": job.resources.time_budget_hours,
        "env": dict(job.env),
        "requirements": [dataclasses.astuple(r) for r in job.requirements],
        "probes": [list(p) for p in job.probes],
        "resume_source": resume_source,
        "git_sha": git_sha,
        "bundle_sha256": bundle.sha256,
        "bundle_b64": base64.encodebytes(bundle.data).decode("ascii").strip(),
    }


def render_script(variables: dict[str, Any], folder: Path | None = None) -> str:
    return render_template(TEMPLATE, variables, folder)


def write_script(out: Path, variables: dict[str, Any]) -> RenderedKernel:
    """Write `out/train.py`. Size is checked by the caller (pre-flight)."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / SCRIPT_NAME
    script.write_text(render_script(variables), encoding="utf-8")
    return RenderedKernel(folder=out, script=script, script_size=script.stat().st_size)
