"""SkyPilot's managed-job statuses (`sky.jobs.ManagedJobStatus`) -> ours: an explicit table, keyed by member name so
this module needs no SkyPilot import; tests check that every member of the real enum is here.

Our `running` means the kernel may be executing: a recovering job (preempted, being relaunched) stays `running`
with a reason, because the registry never moves a run back to `queued`.
"""

from __future__ import annotations

from typing import Any

from dispatch.status import RunStatus

__all__ = ["SKYPILOT_STATUS_MAP", "from_skypilot", "status_reason"]

SKYPILOT_STATUS_MAP: dict[str, RunStatus] = {
    "PENDING": RunStatus.QUEUED,  # waiting for the jobs controller to schedule it
    "SUBMITTED": RunStatus.QUEUED,  # older controllers: accepted, not scheduled yet
    "DEPRECATED_SUBMITTED": RunStatus.QUEUED,  # 0.14's name for SUBMITTED
    "STARTING": RunStatus.QUEUED,  # the cluster is being provisioned (setup runs in it)
    "RUNNING": RunStatus.RUNNING,
    "WINDING_DOWN": RunStatus.RUNNING,  # the run command ended; SkyPilot tears the cluster down before the verdict
    "RECOVERING": RunStatus.RUNNING,  # preempted: relaunching, then the kernel resumes from the output storage
    "CANCELLING": RunStatus.CANCELLING,
    "SUCCEEDED": RunStatus.COMPLETE,
    "CANCELLED": RunStatus.CANCELLED,
    "FAILED": RunStatus.ERROR,  # the run command exited non-zero (the kernel's marker says why)
    "FAILED_SETUP": RunStatus.ERROR,
    "FAILED_PRECHECKS": RunStatus.ERROR,
    "FAILED_NO_RESOURCE": RunStatus.ERROR,
    "FAILED_CONTROLLER": RunStatus.ERROR,
}

# What a status means for the user, when SkyPilot gives no failure reason of its own.
_REASONS = {
    "RECOVERING": "preempted or lost its machine: SkyPilot is relaunching it (it resumes from its last checkpoint)",
    "FAILED": "the kernel failed",
    "FAILED_SETUP": "the setup command failed (installing what the image lacks)",
    "FAILED_PRECHECKS": "SkyPilot refused the task before launching it (check the task: resources, infra, storage)",
    "FAILED_NO_RESOURCE": "no machine with these resources was available (try another --infra, or without --spot)",
    "FAILED_CONTROLLER": "SkyPilot's jobs controller failed (see `sky jobs logs --controller`)",
}


def _name(status: Any) -> str:
    return str(getattr(status, "name", None) or str(status).rsplit(".", 1)[-1]).upper()


def from_skypilot(status: Any) -> RunStatus:
    """A ManagedJobStatus (member, its name, or 'ManagedJobStatus.X') as a RunStatus."""
    try:
        return SKYPILOT_STATUS_MAP[_name(status)]
    except KeyError:
        raise ValueError(f"unknown SkyPilot managed-job status {status!r}") from None


def status_reason(status: Any, failure_reason: str | None, recovery_count: int | None = None) -> str | None:
    """The reason kept with the run: SkyPilot's own, else what the status means; recoveries are counted."""
    name = _name(status)
    reason = (failure_reason or "").strip() or _REASONS.get(name)
    if name == "FAILED_SETUP" and failure_reason:
        reason = f"setup failed: {failure_reason.strip()}"
    if recovery_count and name in ("RUNNING", "RECOVERING"):
        note = f"recovered from {recovery_count} preemption{'s' if recovery_count > 1 else ''}"
        reason = f"{reason}; {note}" if reason else note
    if reason and name.startswith("FAILED"):
        reason = f"SkyPilot job {name}: {reason}"
    return reason
