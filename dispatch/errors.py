"""Typed dispatch errors. Each subclasses the chexvision error that sets its exit code (DESIGN §7).

The Kaggle backend has one chokepoint (`dispatch.backends.kaggle.translate_error`) that turns client failures
into these; the CLI root prints `error: <message> — <hint>` and exits with the code.
"""

from __future__ import annotations

from pathlib import Path

from chexvision.errors import BackendError, BadInputError, RunFailedError

__all__ = [
    "BackendUnavailableError",
    "KernelTooLargeError",
    "PushRejectedError",
    "RunVerificationError",
    "SecretFoundError",
    "UnknownRunError",
]


class SecretFoundError(BadInputError):
    """A file that would enter the bundle holds (or is) a credential."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            f"refusing to bundle {path}: it looks like {what}",
            "remove the secret from the source tree (credentials never leave this machine) and dispatch again",
        )
        self.path = path
        self.what = what


class KernelTooLargeError(BadInputError):
    """The rendered kernel script is over Kaggle's source limit."""

    def __init__(self, size: int, limit: int, path: Path | None = None) -> None:
        super().__init__(
            f"rendered kernel script is {size:,} bytes, over Kaggle's {limit:,}-byte limit",
            "shrink the bundle (large package data?) — see `chexvision dispatch train --dry-run --out DIR`",
        )
        self.size = size
        self.limit = limit
        self.path = path


class UnknownRunError(BadInputError):
    """No run with this id in the registry."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in the registry", "list runs with `chexvision status`")
        self.run_id = run_id


class PushRejectedError(BadInputError):
    """Kaggle refused the push for a reason the user can fix (bad source, title, metadata)."""

    def __init__(self, error: str, hint: str | None = None) -> None:
        super().__init__(f"Kaggle rejected the kernel push: {error}", hint or "fix the kernel metadata and retry")
        self.error = error


class BackendUnavailableError(BackendError):
    """The backend could not be reached or refused us (network, auth, quota, throttling that did not clear)."""

    def __init__(self, message: str, hint: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, hint)
        self.status_code = status_code


class RunVerificationError(RunFailedError):
    """A fetched run directory is not a valid DESIGN §4 run directory."""

    def __init__(self, run_dir: Path, problems: list[str]) -> None:
        super().__init__(
            f"run directory {run_dir} is not valid: {'; '.join(problems)}",
            "check the run's log with `chexvision logs RUN_ID`; re-fetch with `chexvision fetch --run RUN_ID`",
        )
        self.run_dir = run_dir
        self.problems = problems
