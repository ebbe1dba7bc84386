"""What every backend does. The public methods do the shared work; `_hooks` do the backend-specific part."""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dispatch.errors import KernelTooLargeError
from dispatch.registry import RunRecord

if TYPE_CHECKING:  # render pulls in jinja2: loaded only when a kernel is rendered (status stays fast)
    from dispatch.render import KernelSpec, MetadataSpec, RenderedKernel
from dispatch.status import RunStatus

__all__ = ["MARKER_NAME", "Backend", "LaunchRequest", "RemoteState", "kernel_slug", "kernel_title", "read_marker"]

MARKER_NAME = "chexvision-status.json"


def kernel_slug(run_id: str) -> str:
    """One Kaggle kernel per run: its slug is derived from the run id (<= 50 characters)."""
    return f"chexvision-{run_id}"


def kernel_title(run_id: str) -> str:
    """A title that slugifies back to `kernel_slug(run_id)`, as Kaggle wants."""
    return kernel_slug(run_id).replace("-", " ")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The kernel's final status marker {status, reason}, or None when absent or half-written."""
    try:
        data = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one run."""

    record: RunRecord  # already in the registry, status SUBMITTING
    kernel: KernelSpec
    gpu: str = "t4x2"
    parent: RunRecord | None = None  # the run continued with --resume


@dataclass(frozen=True)
class RemoteState:
    status: RunStatus
    reason: str | None = None


class Backend(abc.ABC):
    """A place that runs rendered kernels."""

    name: ClassVar[str]
    max_active_runs: ClassVar[int | None] = None  # the backend's limit on concurrent sessions, if any
    source_limit: ClassVar[int | None] = None  # the largest kernel script the backend accepts, in bytes
    default_time_budget: ClassVar[float | None] = None  # hours of training when --time-budget is not given
    # What this backend cannot do, so callers can refuse early with a clear message.
    cannot: ClassVar[frozenset[str]] = frozenset()

    def render(self, request: LaunchRequest, folder: Path) -> RenderedKernel:
        """Write the kernel folder for `request` (also the `--dry-run` output)."""
        from dispatch.render import render_kernel

        return render_kernel(folder, self._kernel_spec(request), self._metadata_spec(request))

    def check_size(self, rendered: RenderedKernel) -> None:
        if self.source_limit is not None and rendered.script_size >= self.source_limit:
            raise KernelTooLargeError(rendered.script_size, self.source_limit, rendered.script)

    def preflight(self, rendered: RenderedKernel, request: LaunchRequest) -> None:
        """Refuse before anything is recorded or sent: credentials, metadata, quota (where the backend tells)."""
        self._preflight(rendered, request)

    def submit(self, rendered: RenderedKernel, request: LaunchRequest) -> dict[str, Any]:
        """Start the rendered kernel. Returns the registry fields to record (handle, pid, status...)."""
        return self._submit(rendered, request)

    def poll(self, record: RunRecord) -> RemoteState:
        """The run's current state as the backend sees it."""
        return self._poll(record)

    def logs(self, record: RunRecord) -> str:
        return self._logs(record)

    def cancel(self, record: RunRecord) -> RemoteState:
        return self._cancel(record)

    def download(self, record: RunRecord, dest: Path) -> list[Path]:
        """Copy the run's output folder into `dest` (resumable: complete files are not fetched again)."""
        dest.mkdir(parents=True, exist_ok=True)
        return self._download(record, dest)

    # hooks
    def _kernel_spec(self, request: LaunchRequest) -> KernelSpec:
        return request.kernel

    @abc.abstractmethod
    def _metadata_spec(self, request: LaunchRequest) -> MetadataSpec: ...

    def _preflight(self, rendered: RenderedKernel, request: LaunchRequest) -> None:
        return None

    @abc.abstractmethod
    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _poll(self, record: RunRecord) -> RemoteState: ...

    @abc.abstractmethod
    def _logs(self, record: RunRecord) -> str: ...

    @abc.abstractmethod
    def _cancel(self, record: RunRecord) -> RemoteState: ...

    @abc.abstractmethod
    def _download(self, record: RunRecord, dest: Path) -> list[Path]: ...
