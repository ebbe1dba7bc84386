"""The public API: submit a JobSpec to a backend, follow it, cancel it, fetch its outputs.

This module checks a job against its backend, bundles, renders and starts it; following runs lives in
`dispatch.tracking`, fetching in `dispatch.fetch`, both re-exported here. Functions return data and raise
`dispatch.errors` types; nothing here prints. Every function takes the caller's home folder (the registry is
`<home>/runs.db`, backends keep their files under it) and opens the registry for the duration of the call only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dispatch.backends import Backend, Capabilities, LaunchRequest, backend_class, choose_backend, get_backend
from dispatch.errors import BackendUnavailableError, InvalidJobError
from dispatch.fetch import FetchResult, fetch_outputs
from dispatch.job import JobSpec
from dispatch.registry import Registry, RunRecord, utcnow
from dispatch.status import RunStatus
from dispatch.tracking import (
    Summarize,
    cancel_run,
    describe_handle,
    follow_logs,
    get_run,
    list_runs,
    record_publication,
    run_logs,
    set_summary,
    wait_for_runs,
    watch_run,
    watch_runs,
)

if TYPE_CHECKING:  # bundle and render load when a run is submitted, not for `status`
    from dispatch.bundle import Bundle
    from dispatch.render import RenderedKernel

__all__ = [
    "FetchResult",
    "RunRecord",
    "RunStatus",
    "Submitted",
    "Summarize",
    "backend_capabilities",
    "cancel_run",
    "choose_backend",
    "describe_handle",
    "fetch_outputs",
    "follow_logs",
    "get_run",
    "list_runs",
    "record_publication",
    "run_logs",
    "set_summary",
    "submit",
    "wait_for_runs",
    "watch_run",
    "watch_runs",
]


@dataclass(frozen=True)
class Submitted:
    """What `submit` did: the run, its bundle and kernel script, and where it runs."""

    run_id: str
    backend: str
    backend_title: str  # for messages: "Kaggle"
    status: RunStatus
    bundle_sha256: str
    bundle_size: int
    bundle_files: int
    script_size: int
    source_limit: int | None  # the backend's limit on the script, in bytes
    handle: str | None = None  # the backend's handle, described (`owner/slug/N`, a folder)
    dry_run_dir: Path | None = None


def backend_capabilities(name: str) -> Capabilities:
    """What the backend `name` can do (imports its module, never its SDK)."""
    return backend_class(name).capabilities


def _parent(home: Path, job: JobSpec, backend: str) -> RunRecord | None:
    if job.parent_run_id is None:
        return None
    with Registry.at(home) as reg:
        parent = reg.get(job.parent_run_id)
    if parent.backend != backend:
        raise InvalidJobError(
            f"run {parent.run_id} ran on {parent.backend}", f"resume it with --backend {parent.backend}"
        )
    return parent


def _prepare(
    job: JobSpec, backend: Backend, parent: RunRecord | None, folder: Path
) -> tuple[LaunchRequest, Bundle, RenderedKernel]:
    from dispatch.bundle import build_bundle, check_job_secrets, source_git_sha

    check_job_secrets(job)
    bundle = build_bundle(job.sources)
    request = LaunchRequest(job=job, bundle=bundle, git_sha=source_git_sha(job.sources), parent=parent)
    rendered = backend.render(request, folder)
    backend.check_size(rendered)
    return request, bundle, rendered


def _record(request: LaunchRequest, backend: str) -> RunRecord:
    job = request.job
    return RunRecord(
        run_id=job.run_id,
        backend=backend,
        label=job.label,
        command=list(job.main.argv),
        git_sha=request.git_sha,
        bundle_sha256=request.bundle.sha256,
        bundle_size=request.bundle.size,
        parent_run_id=job.parent_run_id,
        meta=dict(job.meta),
        job=job.describe(),
        data_source={"kind": job.data.kind, "reference": job.data.reference, **dict(job.data.details)},
    )


def submit(job: JobSpec, home: Path, *, backend: str | None = None, dry_run_out: Path | None = None) -> Submitted:
    """Bundle, render and start `job` on `backend` (default: `choose_backend()`); with `dry_run_out`, only write
    the kernel folder there.

    Everything that can be refused (capabilities, secrets, size, credentials, quota, capacity) is checked before
    the run enters the registry; a run that fails to start after that is recorded as `error` with the reason.
    """
    name = backend or choose_backend()[0]
    impl = get_backend(name, home)
    impl.check(job)  # what the backend cannot run, or is not set up for, is refused before anything is written
    if dry_run_out is None:
        with Registry.at(home) as reg:  # and so is an unusable registry
            reg.list(limit=1)
    parent = _parent(home, job, name)
    request, bundle, rendered = _prepare(job, impl, parent, dry_run_out or home / "kernels" / job.run_id)

    def result(status: RunStatus, handle: str | None = None) -> Submitted:
        return Submitted(
            run_id=job.run_id,
            backend=name,
            backend_title=impl.title,
            status=status,
            bundle_sha256=bundle.sha256,
            bundle_size=bundle.size,
            bundle_files=len(bundle.files),
            script_size=rendered.script_size,
            source_limit=impl.capabilities.source_limit,
            handle=handle,
            dry_run_dir=dry_run_out,
        )

    if dry_run_out is not None:
        return result(RunStatus.SUBMITTING)
    impl.preflight(rendered, request)
    _check_capacity(home, impl)
    with Registry.at(home) as reg:
        reg.add(_record(request, name))
    try:
        launched = impl.submit(rendered, request)
    except Exception as exc:
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        with Registry.at(home) as reg:
            reg.update(
                job.run_id, status=RunStatus.ERROR, failure_reason=f"dispatch failed: {reason}", finished_at=utcnow()
            )
        raise
    with Registry.at(home) as reg:
        record = reg.update(job.run_id, status=launched.status, handle=launched.handle, started_at=utcnow())
    return result(record.status, impl.describe(record.handle))


def _check_capacity(home: Path, backend: Backend) -> None:
    limit = backend.capabilities.max_active_runs
    if limit is None:
        return
    active = [
        r
        for r in list_runs(home, refresh=True)
        if r.backend == backend.name and not r.status.is_terminal() and r.status != RunStatus.SUBMITTING
    ]
    if len(active) >= limit:
        ids = ", ".join(r.run_id for r in active)
        raise BackendUnavailableError(
            f"{len(active)} {backend.name} runs are already active ({ids}); the limit is {limit}",
            "wait for one to finish (`chexvision status --watch`) or cancel one",
        )
