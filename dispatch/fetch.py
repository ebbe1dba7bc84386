"""Fetch a finished run's outputs and verify them as a DESIGN §4 run directory (without importing torch).

The CLI imports these through `dispatch.runs`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from chexvision.errors import BadInputError, RunFailedError
from dispatch.backends import get_backend
from dispatch.errors import RunVerificationError
from dispatch.registry import Registry, chexvision_home
from dispatch.status import RunStatus
from dispatch.tracking import best_val_auc, get_run

__all__ = ["EXPECTED_RUN_FILES", "REQUIRED_RUN_FILES", "FetchResult", "fetch_run", "verify_run_dir"]

REQUIRED_RUN_FILES = ("run.json", "config.json", "history.json", "metrics.json", "model.safetensors")
EXPECTED_RUN_FILES = ("last.ckpt", "train.log")  # written by every run, but a run directory works without them
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class FetchResult:
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    best_val_auc: float | None = None


def _safetensors_problem(path: Path) -> str | None:
    """Check the safetensors header and offsets without unpickling (or importing torch)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "model.safetensors is truncated"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            return "model.safetensors has an impossible header length"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "model.safetensors header is not JSON"
    tensors = {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else {}
    if not tensors:
        return "model.safetensors holds no tensors"
    try:
        end = max(int(v["data_offsets"][1]) for v in tensors.values())
    except (KeyError, IndexError, TypeError, ValueError):
        return "model.safetensors header has a tensor without data_offsets"
    if 8 + n + end != size:
        return f"model.safetensors size {size} does not match its header ({8 + n + end})"
    return None


def verify_run_dir(run_dir: Path) -> list[str]:
    """Check a DESIGN §4 run directory; raise RunVerificationError listing every problem.

    Returns the expected-but-optional files that are missing (last.ckpt, train.log).
    """
    problems = [f"{name} missing" for name in REQUIRED_RUN_FILES if not (run_dir / name).is_file()]
    for name in ("run.json", "config.json", "history.json", "metrics.json"):
        path = run_dir / name
        if path.is_file():
            try:
                if not isinstance(json.loads(path.read_text()), dict):
                    problems.append(f"{name} is not a JSON object")
            except ValueError as exc:
                problems.append(f"{name} is not valid JSON ({exc})")
    weights = run_dir / "model.safetensors"
    if weights.is_file():
        problem = _safetensors_problem(weights)
        if problem:
            problems.append(problem)
    if problems:
        raise RunVerificationError(run_dir, problems)
    return [name for name in EXPECTED_RUN_FILES if not (run_dir / name).is_file()]


def fetch_run(run_id: str, out: Path | None = None) -> FetchResult:
    """Download exactly this run's outputs (resumably), verify them and record the run directory."""
    record = get_run(run_id)
    if not record.status.is_terminal():
        raise BadInputError(f"run {run_id} is still {record.status}", f"wait: `chexvision status {run_id} --watch`")
    if record.status != RunStatus.COMPLETE:
        raise RunFailedError(
            f"run {run_id} ended {record.status}: {record.failure_reason or 'no reason recorded'}",
            f"see `chexvision logs {run_id}`",
        )
    run_dir = (out or chexvision_home() / "runs" / run_id).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--out {run_dir} is a file, not a folder", "give a new or existing folder")
    files = get_backend(record.backend).download(record, run_dir)
    missing = verify_run_dir(run_dir)
    best = best_val_auc(run_dir)
    with Registry.open() as reg:
        reg.update(run_id, output_dir=str(run_dir.resolve()), best_val_auc=best)
    return FetchResult(run_id, run_dir, files, missing, best)
