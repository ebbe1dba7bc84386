"""Follow dispatched runs: list and refresh them from their backend, read logs, watch, cancel, record results.

Functions return data and raise typed errors; nothing here prints. Each opens the registry of `home` for the call
only. Two refreshes may run at once (`status --watch` in one terminal, `status` in another): each writes only if the
run is still as it read it, so a slower one never overwrites a newer status with an older one. A caller that wants
a summary of a run's outputs while it runs (a metric from a history file) passes `summarize`: it is called on the
output folder of backends with live outputs, and its result stored in `summary`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dispatch.backends import Backend, get_backend
from dispatch.registry import Registry, RunRecord, utcnow
from dispatch.status import RunStatus

__all__ = [
    "Summarize",
    "cancel_run",
    "describe_handle",
    "follow_logs",
    "get_run",
    "list_runs",
    "record_publication",
    "run_logs",
    "set_summary",
    "wait_for_runs",
    "watch_run",
    "watch_runs",
]

Summarize = Callable[[Path], dict[str, Any] | None]


def _refresh(home: Path, record: RunRecord, backends: dict[str, Backend], summarize: Summarize | None) -> RunRecord:
    if record.status.is_terminal() or record.status == RunStatus.SUBMITTING:
        return record
    if record.backend not in backends:  # one backend (and client) per call, shared by every run
        backends[record.backend] = get_backend(record.backend, home)
    backend = backends[record.backend]
    state = backend.poll(record)
    updates: dict[str, Any] = {}
    if state.status != record.status or state.reason != record.failure_reason:
        updates.update(status=state.status, failure_reason=state.reason)
        if state.status.is_terminal():
            updates["finished_at"] = utcnow()
    live = backend.live_output(record) if summarize else None
    if summarize and live is not None and live.is_dir():
        summary = summarize(live)
        if summary is not None and summary != record.summary:
            updates["summary"] = summary
    if not updates:
        return record
    # `record` was read before the backend was asked: write only if no other refresh changed the run meanwhile
    # (a stale read must not overwrite a newer status or summary); the registry also never moves a status back.
    seen = {"status": record.status, "failure_reason": record.failure_reason, "summary": record.summary}
    with Registry.at(home) as reg:
        return reg.update(record.run_id, expect=seen, **updates)


def list_runs(
    home: Path, *, refresh: bool = True, limit: int | None = 50, summarize: Summarize | None = None
) -> list[RunRecord]:
    """The newest runs first; with `refresh`, each unfinished run's status is asked of its backend."""
    with Registry.at(home) as reg:
        records = reg.list(limit)
    if not refresh:
        return records
    backends: dict[str, Backend] = {}
    return [_refresh(home, r, backends, summarize) for r in records]


def get_run(home: Path, run_id: str, *, refresh: bool = True, summarize: Summarize | None = None) -> RunRecord:
    with Registry.at(home) as reg:
        record = reg.get(run_id)
    return _refresh(home, record, {}, summarize) if refresh else record


def describe_handle(home: Path, record: RunRecord) -> str:
    """The run's backend handle in one string for people (`owner/slug/N`, a folder), '-' when there is none."""
    return get_backend(record.backend, home).describe(record.handle)


def run_logs(home: Path, run_id: str) -> str:
    """The run's log so far ('' before the backend has one)."""
    record = get_run(home, run_id, refresh=False)
    if record.status == RunStatus.SUBMITTING:
        return ""
    return get_backend(record.backend, home).logs(record)


def watch_run(
    home: Path,
    run_id: str,
    *,
    interval: float = 2.0,
    max_interval: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    summarize: Summarize | None = None,
) -> Iterator[RunRecord]:
    """Yield the run's record until it ends, polling with exponential backoff (interval x1.5, capped)."""
    while True:
        record = get_run(home, run_id, summarize=summarize)
        yield record
        if record.status.is_terminal():
            return
        sleep(interval)
        interval = min(interval * 1.5, max_interval)


def watch_runs(
    home: Path,
    *,
    interval: float = 2.0,
    max_interval: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    summarize: Summarize | None = None,
) -> Iterator[list[RunRecord]]:
    """Yield `list_runs()` after each poll until none of them is still going (the same backoff as `watch_run`)."""
    while True:
        records = list_runs(home, summarize=summarize)
        yield records
        if all(r.status.is_terminal() for r in records):
            return
        sleep(interval)
        interval = min(interval * 1.5, max_interval)


def wait_for_runs(
    home: Path,
    *,
    interval: float = 2.0,
    max_interval: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    summarize: Summarize | None = None,
) -> list[RunRecord]:
    """`list_runs()` once none of them is still going."""
    last: list[RunRecord] = []
    for records in watch_runs(home, interval=interval, max_interval=max_interval, sleep=sleep, summarize=summarize):
        last = records
    return last


def follow_logs(
    home: Path, run_id: str, *, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep
) -> Iterator[str]:
    """Yield new log text until the run ends."""
    seen = 0
    for record in watch_run(home, run_id, interval=interval, max_interval=15.0, sleep=sleep):
        text = run_logs(home, run_id)
        if len(text) > seen:
            yield text[seen:]
            seen = len(text)
        if record.status.is_terminal():
            return


def cancel_run(home: Path, run_id: str) -> RunRecord:
    """Stop the run on its backend and record it cancelled; an ended run is returned unchanged."""
    record = get_run(home, run_id)
    if record.status.is_terminal():
        return record
    state = get_backend(record.backend, home).cancel(record)
    with Registry.at(home) as reg:
        return reg.update(run_id, status=state.status, failure_reason=state.reason, finished_at=utcnow())


def set_summary(home: Path, run_id: str, summary: dict[str, Any]) -> RunRecord:
    """Store what the caller read from the run's outputs (shown by `status`)."""
    with Registry.at(home) as reg:
        return reg.update(run_id, summary=summary)


def record_publication(home: Path, run_id: str, *, repo: str, revision: str | None, commit: str, tag: str) -> RunRecord:
    """Remember where a fetched run was published (repo, commit and the tag named after the run)."""
    with Registry.at(home) as reg:
        return reg.update(run_id, hub_repo=repo, hub_revision=revision, hub_commit=commit, hub_tag=tag)
