"""The SkyPilot backend: each run is one SkyPilot managed job (`sky.jobs`), its outputs in storage the user names.

Its handle is `{job_id, name, output}`: the managed job's id, its name (the run id) and the storage URL of the run's
output folder. `status`, `logs`, `cancel` go through SkyPilot's managed-job API; `fetch` syncs the output folder
down with SkyPilot's own storage command. A preempted spot job is relaunched by SkyPilot and resumes from the last
checkpoint in its output folder: no new dispatch. `--dry-run` writes `task.yaml` (as SkyPilot writes it) beside the
kernel; `sky jobs launch task.yaml` would run it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.backends.base import MARKER_NAME, Backend, Capabilities, Launched, LaunchRequest, RemoteState, read_marker
from dispatch.backends.skypilot.client import SkyPilotClient, missing_sdk_error, sdk_installed
from dispatch.backends.skypilot.status import from_skypilot, status_reason
from dispatch.backends.skypilot.task import output_folder, resources_config, task_config
from dispatch.errors import BackendUnavailableError, CapabilityError, InvalidJobError
from dispatch.job import JobSpec
from dispatch.registry import RunRecord
from dispatch.status import RunStatus

if TYPE_CHECKING:
    from dispatch.render import RenderedKernel

__all__ = ["ACCELERATORS", "OUTPUT_ENV", "TASK_NAME", "SkyPilotBackend"]

TASK_NAME = "task.yaml"
OUTPUT_ENV = "DISPATCH_SKYPILOT_OUTPUT"  # the default --output (a storage URL), for users with one bucket
# SkyPilot accelerator names (its catalog's spelling) we offer as NAME:COUNT; SkyPilot's optimizer picks the cloud.
ACCELERATORS = ("H100", "H200", "B200", "A100", "A100-80GB", "L40S", "L4", "A10G", "T4", "V100")
COUNTS = (1, 2, 4, 8)
# Storage SkyPilot mounts (file_mounts with a MOUNT mode) and syncs down (`sky.cloud_stores`).
STORAGE_SCHEMES = ("s3", "gs", "r2", "cos", "oci", "nebius", "cw", "https")
_URL = re.compile(r"^(?P<scheme>[a-z0-9]+)://(?P<bucket>[A-Za-z0-9._-]+)(?P<path>(/[A-Za-z0-9._/-]*)?)$")


def check_output_url(url: str) -> None:
    match = _URL.match(url)
    if not match or match["scheme"] not in STORAGE_SCHEMES:
        raise InvalidJobError(
            f"--output {url!r} is not a storage URL SkyPilot mounts",
            f"give BUCKET_URL as {' | '.join(s + '://BUCKET[/PREFIX]' for s in STORAGE_SCHEMES[:3])} ...",
        )


class SkyPilotBackend(Backend):
    name = "skypilot"
    title = "SkyPilot"
    capabilities = Capabilities(
        data_kinds=frozenset({"prepared"}),  # the kernel downloads or makes its data on every node
        gpus=tuple(f"{name}:{count}" for name in ACCELERATORS for count in COUNTS),
        default_gpu="L4:1",  # a cheap default: a forgotten --gpu must not start eight H100s
        remote=True,
        auto_priority=0,  # costs money: only when asked for
    )

    def __init__(self, home: Path, client: Any = None) -> None:
        super().__init__(home)
        self._client = client

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if sdk_installed() else f"SkyPilot is not installed ({missing_sdk_error().hint})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = SkyPilotClient()
        return self._client

    def check(self, job: JobSpec) -> None:
        """The shared checks, then: SkyPilot installed, an output storage URL, a sane node count."""
        if not sdk_installed():
            raise missing_sdk_error()
        super().check(job)
        check_output_url(self._output(job))
        if job.resources.nodes < 1:
            raise CapabilityError(self.name, f"--nodes {job.resources.nodes}: a job needs at least one node")
        self.client.check_resources(resources_config(job.resources, self._gpu(job)))

    def _gpu(self, job: JobSpec) -> str:
        return job.resources.gpu or self.capabilities.default_gpu or ""

    @staticmethod
    def _output(job: JobSpec) -> str:
        output = job.resources.output or os.environ.get(OUTPUT_ENV)
        if not output:
            raise InvalidJobError(
                "the skypilot backend needs storage for the run's outputs",
                f"give --output BUCKET_URL (e.g. s3://my-bucket/chexvision), or set {OUTPUT_ENV}",
            )
        return output.rstrip("/")

    # --- rendering ---------------------------------------------------------------------------------------------
    def _restore_source(self, parent: RunRecord) -> str:
        return parent.run_id  # the parent's output folder, in the same storage, mounted as the kernel's input

    def _config(self, request: LaunchRequest, rendered: RenderedKernel) -> dict[str, Any]:
        job = request.job
        output = self._output(job)
        if request.parent is not None and request.parent.handle.get("output") != output_folder(
            output, request.parent.run_id
        ):
            raise InvalidJobError(
                f"run {request.parent.run_id} wrote its outputs elsewhere ({request.parent.handle.get('output')})",
                "continue it with the same --output",
            )
        return task_config(job, rendered.folder, self._gpu(job), output)

    def _render_extra(self, request: LaunchRequest, rendered: RenderedKernel) -> tuple[Path, ...]:
        path = rendered.folder / TASK_NAME
        self.client.dump_yaml(path, self.client.task_yaml(self._config(request, rendered)))
        return (path,)

    def _describe(self, handle: dict[str, Any]) -> str:
        return f"managed job {handle.get('job_id', '?')} -> {handle.get('output', '?')}"

    # --- launch and follow ---------------------------------------------------------------------------------------
    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> Launched:
        job = request.job
        job_id = self.client.launch(self._config(request, rendered), name=job.run_id)
        handle = {"job_id": job_id, "name": job.run_id, "output": output_folder(self._output(job), job.run_id)}
        return Launched(RunStatus.QUEUED, handle)

    def _poll(self, record: RunRecord) -> RemoteState:
        job = self.client.job(int(record.handle["job_id"]))
        status = from_skypilot(job.status)
        reason = status_reason(job.status, getattr(job, "failure_reason", None), getattr(job, "recovery_count", 0))
        if status == RunStatus.COMPLETE:
            reason = self._marker_reason(record)  # e.g. stopped at the time budget: how to continue it
        elif status == RunStatus.ERROR:
            why = self._marker_reason(record) if job.status.name == "FAILED" else None  # the kernel's own words
            reason = f"{f'SkyPilot job FAILED: {why}' if why else reason}; see `chexvision logs {record.run_id}`"
        return RemoteState(status, reason)

    def _marker_reason(self, record: RunRecord) -> str | None:
        """The reason the kernel left in its status marker in the bucket, if it left one."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                self.client.download_file(f"{record.handle['output']}/{MARKER_NAME}", Path(tmp) / MARKER_NAME)
            except BackendUnavailableError:  # no marker (failed before the kernel started), or unreadable
                return None
            marker = read_marker(Path(tmp))
        return str(marker["reason"]) if marker and marker.get("reason") else None

    def _logs(self, record: RunRecord) -> str:
        text: str = self.client.logs(int(record.handle["job_id"]))
        return text

    def _cancel(self, record: RunRecord) -> RemoteState:
        job_id = record.handle.get("job_id")
        if job_id is None:
            return RemoteState(RunStatus.CANCELLED, "cancelled by the user before SkyPilot accepted the job")
        job = self.client.job(int(job_id))
        state = from_skypilot(job.status)
        if state.is_terminal() and state != RunStatus.CANCELLED:  # it ended before the cancel arrived
            return RemoteState(state, status_reason(job.status, getattr(job, "failure_reason", None)))
        if not state.is_terminal():
            self.client.cancel(int(job_id))  # SkyPilot cancels asynchronously: the job reads CANCELLING first
        return RemoteState(RunStatus.CANCELLED, "cancelled by the user (SkyPilot managed job cancelled)")

    def _download(self, record: RunRecord, dest: Path) -> list[Path]:
        self.client.download(record.handle["output"], dest)
        return sorted(p for p in dest.rglob("*") if p.is_file() and not p.name.endswith((".tmp", ".part")))
