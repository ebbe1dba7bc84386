"""Kaggle's kernel-metadata.json: rendered from kernels/kernel-metadata.json.j2 and checked before a push."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatch.render import SCRIPT_NAME, render_template

__all__ = [
    "GPU_SHAPES",
    "METADATA_NAME",
    "REFUSED_SHAPES",
    "SOURCE_LIMIT",
    "MetadataSpec",
    "kernel_slug",
    "kernel_title",
    "render_metadata",
    "validate_metadata",
]

SOURCE_LIMIT = 1_000_000  # bytes; Kaggle refuses larger kernel sources
METADATA_NAME = "kernel-metadata.json"
# Resources.gpu name -> Kaggle machine_shape. kaggle 2.2.5 documents NvidiaTeslaT4 (the 2 x T4 machine, every
# account's default), NvidiaTeslaP100 (retired: sessions land on T4 x2) and TpuV5E8; NvidiaL4 is the L4 machine
# Kaggle offers accounts that have it (an account without it gets the push refused, and the error is surfaced).
GPU_SHAPES = {"t4x2": "NvidiaTeslaT4", "l4": "NvidiaL4"}
# Accelerators Kaggle offers that this kernel cannot use, and why (refused before anything is built).
REFUSED_SHAPES = {
    "p100": "Kaggle's P100 (sm_60) cannot run its image's PyTorch, whose CUDA kernels start at sm_70, so the first"
    " CUDA call fails (and kaggle 2.2.5 marks NvidiaTeslaP100 retired: sessions run on T4 x2 instead)",
    "tpu": "Kaggle's TPU v5e-8 (TpuV5E8) runs XLA, and training here is CUDA (or CPU) PyTorch",
}


def kernel_slug(run_id: str) -> str:
    """One Kaggle kernel per run: its slug is derived from the run id (<= 50 characters)."""
    return f"chexvision-{run_id}"


def kernel_title(run_id: str) -> str:
    """A title that slugifies back to `kernel_slug(run_id)`, as Kaggle wants."""
    return kernel_slug(run_id).replace("-", " ")


@dataclass(frozen=True)
class MetadataSpec:
    """Variables of kernel-metadata.json.j2."""

    kernel_id: str  # owner/slug
    title: str
    machine_shape: str
    dataset_sources: list[str] = field(default_factory=list)
    kernel_sources: list[str] = field(default_factory=list)
    code_file: str = SCRIPT_NAME


def render_metadata(spec: MetadataSpec, folder: Path | None = None) -> dict[str, Any]:
    variables = {
        "kernel_id": spec.kernel_id,
        "title": spec.title,
        "code_file": spec.code_file,
        "machine_shape": spec.machine_shape,
        "dataset_sources": spec.dataset_sources,
        "kernel_sources": spec.kernel_sources,
    }
    data: dict[str, Any] = json.loads(render_template("kernel-metadata.json.j2", variables, folder))
    return data


def validate_metadata(meta: dict[str, Any], folder: Path) -> list[str]:
    """Problems with kernel-metadata.json that Kaggle would reject or silently mishandle."""
    from slugify import slugify  # python-slugify, a dependency of kaggle; the same function the client uses

    problems: list[str] = []
    kernel_id = str(meta.get("id", ""))
    parts = kernel_id.split("/")
    if len(parts) != 2 or not all(parts):
        problems.append(f"id {kernel_id!r} is not owner/slug")
    title = str(meta.get("title", ""))
    if not 5 <= len(title) <= 50:
        problems.append(f"title {title!r} must be 5-50 characters")
    elif len(parts) == 2 and slugify(title) != parts[1]:
        problems.append(f"title {title!r} does not slugify to {parts[1]!r}")
    code = folder / str(meta.get("code_file", ""))
    if not meta.get("code_file") or not code.is_file():
        problems.append(f"code_file {meta.get('code_file')!r} not found in {folder}")
    expected = {
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": True,
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            problems.append(f"{key} must be {value!r}, not {meta.get(key)!r}")
    if not meta.get("machine_shape"):
        problems.append("machine_shape is not set")
    return problems
