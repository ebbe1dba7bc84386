"""Follow dispatched runs: list and refresh them from their backend, read logs, watch, cancel, record publication.

Functions return data and raise typed errors; nothing here prints. Each opens the registry for the call only.
The CLI imports these through `dispatch.runs`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dispatch.backends import Backend, get_backend
from dispatch.registry import Registry, RunRecord, utcnow
from dispatch.status import RunStatus

__all__ = [
    "best_val_auc",
    "cancel_run",
    "follow_logs",
    "get_run",
    "list_runs",
    "record_publication",
    "run_logs",
    "wait_for_runs",
    "watch_run",
]


def best_val_auc(run_dir: Path) -> float | None:
    """`best_val_macro_auc` from a run directory's history.json, or None while there is none."""
    try:
        value = json.loads((run_dir / "history.json").read_text()).get("best_val_macro_auc")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _refresh(record: RunRecord, backends: dict[str, Backend]) -> RunRecord:
    if record.status.is_terminal() or record.status == RunStatus.SUBMITTING:
        return record
    if record.backend not in backends:  # one backend (and Kaggle client) per call, shared by every run
        backends[record.backend] = get_backend(record.backend)
    state = backends[record.backend].poll(record)
    updates: dict[str, Any] = {}
    if state.status != record.status or state.reason != record.failure_reason:
        updates.update(status=state.status, failure_reason=state.reason)
        if state.status.is_terminal():
            updates["finished_at"] = utcnow()
    if record.local_dir:
        best = best_val_auc(Path(record.local_dir) / "working")
        if best is not None and best != record.best_val_auc:
            updates["best_val_auc"] = best
    if not updates:
        return record
    with Registry.open() as reg:
        return reg.update(record.run_id, **updates)


def list_runs(refresh: bool = True, limit: int | None = 50) -> list[RunRecord]:
    """The newest runs first; with `refresh`, each unfinished run's status is asked of its backend."""
    with Registry.open() as reg:
        records = reg.list(limit)
    if not refresh:
        return records
    backends: dict[str, Backend] = {}
    return [_refresh(r, backends) for r in records]


def get_run(run_id: str, refresh: bool = True) -> RunRecord:
    with Registry.open() as reg:
        record = reg.get(run_id)
    return _refresh(record, {}) if refresh else record


def run_logs(run_id: str) -> str:
    """The run's log so far ('' before the backend has one)."""
    record = get_run(run_id, refresh=False)
    if record.status == RunStatus.SUBMITTING or (record.backend == "kaggle" and not record.kaggle_handle):
        return ""
    return get_backend(record.backend).logs(record)


def watch_run(
    run_id: str, *, interval: float = 2.0, max_interval: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> Iterator[RunRecord]:
    """Yield the run's record until it ends, polling with exponential backoff (interval x1.5, capped)."""
    while True:
        record = get_run(run_id)
        yield record
        if record.status.is_terminal():
            return
        sleep(interval)
        interval = min(interval * 1.5, max_interval)


def wait_for_runs(
    *, interval: float = 2.0, max_interval: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> list[RunRecord]:
    """`list_runs()` once none of them is still going, polling with the same backoff as `watch_run`."""
    records = list_runs()
    while any(not r.status.is_terminal() for r in records):
        sleep(interval)
        interval = min(interval * 1.5, max_interval)
        records = list_runs()
    return records


def follow_logs(run_id: str, *, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield new log text until the run ends."""
    seen = 0
    for record in watch_run(run_id, interval=interval, max_interval=15.0, sleep=sleep):
        text = run_logs(run_id)
        if len(text) > seen:
            yield text[seen:]
            seen = len(text)
        if record.status.is_terminal():
            return


def cancel_run(run_id: str) -> RunRecord:
    """Stop the run on its backend and record it cancelled; an ended run is returned unchanged."""
    record = get_run(run_id)
    if record.status.is_terminal():
        return record
    state = get_backend(record.backend).cancel(record)
    with Registry.open() as reg:
        return reg.update(run_id, status=state.status, failure_reason=state.reason, finished_at=utcnow())


def record_publication(run_id: str, *, repo: str, revision: str | None, commit: str, tag: str) -> RunRecord:
    """Remember where a fetched run was published (repo, commit and the tag named after the run)."""
    with Registry.open() as reg:
        return reg.update(run_id, hub_repo=repo, hub_revision=revision, hub_commit=commit, hub_tag=tag)
