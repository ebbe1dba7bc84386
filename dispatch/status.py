"""Run status: an ordered `str` enum (declaration order = lifecycle) and the table from Kaggle's statuses."""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["KAGGLE_STATUS_MAP", "RunStatus", "from_kaggle"]


class RunStatus(enum.StrEnum):
    """Lifecycle of a dispatched run. Compare with `<`: earlier states sort first."""

    SUBMITTING = "submitting"  # recorded in the registry, bundle being rendered/pushed; no remote handle yet
    QUEUED = "queued"  # accepted by the backend, waiting for a machine
    RUNNING = "running"  # the kernel is executing (install, data, training)
    CANCELLING = "cancelling"  # a cancel was requested and the backend has not confirmed it yet
    COMPLETE = "complete"  # the kernel finished and wrote its final marker
    ERROR = "error"  # the kernel failed, the push failed, or the process vanished; see failure_reason
    CANCELLED = "cancelled"  # stopped on request (Kaggle: the version was deleted / cancel acknowledged)

    @property
    def rank(self) -> int:
        return list(RunStatus).index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RunStatus):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, RunStatus):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, RunStatus):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, RunStatus):
            return NotImplemented
        return self.rank >= other.rank

    def is_terminal(self) -> bool:
        """True when the run will not change any more."""
        return self in _TERMINAL

    def is_failure(self) -> bool:
        return self in (RunStatus.ERROR, RunStatus.CANCELLED)


_TERMINAL = frozenset({RunStatus.COMPLETE, RunStatus.ERROR, RunStatus.CANCELLED})

# kagglesdk.kernels.types.kernels_enums.KernelWorkerStatus member name -> ours. Keyed by name so this module
# needs no Kaggle import; tests check that every member of the real enum is here.
KAGGLE_STATUS_MAP: dict[str, RunStatus] = {
    "QUEUED": RunStatus.QUEUED,
    "RUNNING": RunStatus.RUNNING,
    "COMPLETE": RunStatus.COMPLETE,
    "ERROR": RunStatus.ERROR,
    "CANCEL_REQUESTED": RunStatus.CANCELLING,
    "CANCEL_ACKNOWLEDGED": RunStatus.CANCELLED,
    "NEW_SCRIPT": RunStatus.QUEUED,  # a saved version whose session has not been scheduled yet
}


def from_kaggle(status: Any) -> RunStatus:
    """Translate a KernelWorkerStatus (enum member, its name, or 'KernelWorkerStatus.X') to a RunStatus."""
    name = getattr(status, "name", None) or str(status).rsplit(".", 1)[-1]
    try:
        return KAGGLE_STATUS_MAP[name.upper()]
    except KeyError:
        raise ValueError(f"unknown Kaggle kernel status {status!r}") from None
