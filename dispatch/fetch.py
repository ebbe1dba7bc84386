"""Fetch a finished run's outputs and check that the files its job declared are there.

What the files hold is the caller's to verify (chexvision checks a run directory with `chexvision.rundir`).
The CLI's library imports these through `dispatch.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dispatch.backends import get_backend
from dispatch.errors import InvalidJobError, OutputsMissingError, RunEndedError, RunNotFinishedError
from dispatch.registry import Registry
from dispatch.status import RunStatus
from dispatch.tracking import get_run

__all__ = ["FetchResult", "fetch_outputs"]


@dataclass(frozen=True)
class FetchResult:
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=list)


def fetch_outputs(home: Path, run_id: str, out: Path | None = None) -> FetchResult:
    """Download exactly this run's outputs (resumably) into `out` (default `<home>/runs/<run_id>`).

    Raises unless the run is complete and every output its job declared arrived; records the folder.
    """
    record = get_run(home, run_id)
    if not record.status.is_terminal():
        raise RunNotFinishedError(run_id, str(record.status))
    if record.status != RunStatus.COMPLETE:
        raise RunEndedError(run_id, str(record.status), record.failure_reason)
    run_dir = (out or home / "runs" / run_id).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidJobError(f"--out {run_dir} is a file, not a folder", "give a new or existing folder")
    files = get_backend(record.backend, home).download(record, run_dir)
    required = record.job.get("outputs", {}).get("required", [])
    missing = [name for name in required if not (run_dir / name).is_file()]
    if missing:
        raise OutputsMissingError(run_dir, missing)
    with Registry.at(home) as reg:
        reg.update(run_id, output_dir=str(run_dir.resolve()))
    return FetchResult(run_id, run_dir, files)
