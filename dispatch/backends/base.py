"""What every backend does. The public methods do the shared work; the `_hooks` do the backend-specific part.

A backend declares what it can do in a frozen `Capabilities` (checked before anything is bundled) and owns its
handle: `_submit` returns a JSON-able dict the registry stores as is, and only the backend reads it again
(`describe`, `_poll`, `_logs`, `_cancel`, `_download`). See `dispatch.backends` for how to add one.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dispatch.bundle import Bundle
from dispatch.errors import CapabilityError, KernelTooLargeError
from dispatch.job import JobSpec
from dispatch.registry import RunRecord
from dispatch.status import RunStatus

if TYPE_CHECKING:  # render pulls in jinja2: loaded only when a kernel is rendered (status stays fast)
    from dispatch.render import RenderedKernel

__all__ = ["MARKER_NAME", "Backend", "Capabilities", "LaunchRequest", "Launched", "RemoteState", "read_marker"]

MARKER_NAME = "chexvision-status.json"  # what kernels/train.py.j2 writes; the name is part of the protocol


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The kernel's final status marker {status, reason}, or None when absent or half-written."""
    try:
        data = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers check a job against it before anything is bundled or sent."""

    data_kinds: frozenset[str]  # DataSource kinds it can provide (prepared, kaggle-dataset, local-dir)
    gpus: tuple[str, ...] = ()  # accelerator names Resources.gpu may take; (): this machine's, no choice
    default_gpu: str | None = None  # what it runs on when Resources.gpu is None
    max_active_runs: int | None = None  # concurrent runs it allows (None: no limit)
    source_limit: int | None = None  # the largest kernel script it accepts, in bytes (None: no limit)
    default_time_budget: float | None = None  # hours a job should stop within when the caller sets none
    remote: bool = False  # runs on another machine (callers default to data it can download there)
    live_outputs: bool = False  # the output folder is readable from this machine while the run goes
    cancel: bool = True  # cancel stops the run
    follow_logs: bool = True  # logs can be read while the run goes
    auto_priority: int = 0  # default choice: the highest-priority backend that is configured (0: never chosen)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one run."""

    job: JobSpec
    bundle: Bundle
    git_sha: str | None = None
    parent: RunRecord | None = None  # the run continued, already checked to be on this backend


@dataclass(frozen=True)
class Launched:
    """What `_submit` returns: the run's first status and the backend's handle for it."""

    status: RunStatus
    handle: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteState:
    status: RunStatus
    reason: str | None = None


class Backend(abc.ABC):
    """A place that runs rendered kernels."""

    name: ClassVar[str]  # the registry name (`--backend NAME`)
    title: ClassVar[str]  # for messages: "Kaggle"
    capabilities: ClassVar[Capabilities]

    def __init__(self, home: Path) -> None:
        self.home = home  # the caller's home folder (the registry lives there too)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot be used now (e.g. no credentials), or None when it can. Never networks."""
        return None

    def check(self, job: JobSpec) -> None:
        """Refuse a job this backend cannot run, naming what is missing."""
        caps = self.capabilities
        if job.data.kind not in caps.data_kinds:
            kinds = ", ".join(sorted(caps.data_kinds))
            raise CapabilityError(
                self.name, f"the {self.name} backend cannot provide a {job.data.kind} data source", f"it takes: {kinds}"
            )
        gpu = job.resources.gpu
        if gpu is not None and gpu not in caps.gpus:
            if not caps.gpus:
                raise CapabilityError(
                    self.name, f"GPU {gpu}: the {self.name} backend uses this machine's GPUs", "drop the GPU choice"
                )
            raise CapabilityError(self.name, f"unknown GPU {gpu!r}", f"choose one of: {', '.join(caps.gpus)}")

    def render(self, request: LaunchRequest, folder: Path) -> RenderedKernel:
        """Write the kernel folder for `request` (also the `--dry-run` output)."""
        from dispatch.render import RenderedKernel, script_variables, write_script

        restore = self._restore_source(request.parent) if request.parent else None
        variables = script_variables(request.job, request.bundle, git_sha=request.git_sha, resume_source=restore)
        rendered = write_script(folder, variables)
        extra = self._render_extra(request, rendered)
        return RenderedKernel(rendered.folder, rendered.script, rendered.script_size, extra)

    def check_size(self, rendered: RenderedKernel) -> None:
        limit = self.capabilities.source_limit
        if limit is not None and rendered.script_size >= limit:
            raise KernelTooLargeError(rendered.script_size, limit, self.title, rendered.script)

    def preflight(self, rendered: RenderedKernel, request: LaunchRequest) -> None:
        """Refuse before anything is recorded or sent: credentials, metadata, quota (where the backend tells)."""
        self._preflight(rendered, request)

    def submit(self, rendered: RenderedKernel, request: LaunchRequest) -> Launched:
        """Start the rendered kernel; returns its first status and the handle the registry keeps."""
        return self._submit(rendered, request)

    def poll(self, record: RunRecord) -> RemoteState:
        """The run's current state as the backend sees it."""
        return self._poll(record)

    def logs(self, record: RunRecord) -> str:
        """The run's log so far ('' before the backend has one)."""
        return self._logs(record) if record.handle else ""

    def cancel(self, record: RunRecord) -> RemoteState:
        return self._cancel(record)

    def download(self, record: RunRecord, dest: Path) -> list[Path]:
        """Copy the run's output folder into `dest` (resumable: complete files are not fetched again)."""
        dest.mkdir(parents=True, exist_ok=True)
        return self._download(record, dest)

    def describe(self, handle: dict[str, Any]) -> str:
        """The handle in one short string for people (`owner/slug/N`, a folder); '-' when there is none."""
        return self._describe(handle) if handle else "-"

    def live_output(self, record: RunRecord) -> Path | None:
        """The run's output folder on this machine while it runs (Capabilities.live_outputs), else None."""
        return None

    # hooks
    def _restore_source(self, parent: RunRecord) -> str:
        """The input folder name under which the kernel finds the parent run's outputs."""
        raise CapabilityError(self.name, f"the {self.name} backend cannot continue a run")

    def _render_extra(self, request: LaunchRequest, rendered: RenderedKernel) -> tuple[Path, ...]:
        return ()

    def _preflight(self, rendered: RenderedKernel, request: LaunchRequest) -> None:
        return None

    @abc.abstractmethod
    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> Launched: ...

    @abc.abstractmethod
    def _poll(self, record: RunRecord) -> RemoteState: ...

    @abc.abstractmethod
    def _logs(self, record: RunRecord) -> str: ...

    @abc.abstractmethod
    def _cancel(self, record: RunRecord) -> RemoteState: ...

    @abc.abstractmethod
    def _download(self, record: RunRecord, dest: Path) -> list[Path]: ...

    @abc.abstractmethod
    def _describe(self, handle: dict[str, Any]) -> str: ...
