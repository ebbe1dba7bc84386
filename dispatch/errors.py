"""Typed dispatch errors: the root of every failure dispatch raises, with fields and an exit code.

`DispatchError` has the shape of `chexvision.errors.CheXVisionError` (`message`, `hint`, `exit_code`,
`one_line()`) without importing it: dispatch knows nothing of its callers. Exit codes (DESIGN §7): 2 bad input,
1 the run failed, 3 a backend or remote service failed. The Kaggle backend has one chokepoint
(`dispatch.backends.kaggle.translate_error`) that turns client failures into these.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendUnavailableError",
    "CapabilityError",
    "DispatchError",
    "InvalidCredentialsError",
    "InvalidJobError",
    "KernelTooLargeError",
    "NotFoundError",
    "OutputsMissingError",
    "PushRejectedError",
    "RegistryCorruptError",
    "RegistryError",
    "RunEndedError",
    "RunNotFinishedError",
    "SecretFoundError",
    "UnknownBackendError",
    "UnknownRunError",
    "UnscannableFileError",
]


class DispatchError(Exception):
    """Base error. `hint` is the fix or the next command to run; `exit_code` is what a CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InvalidJobError(DispatchError):
    """A job or request dispatch cannot run as given (bad field, missing source folder, unknown GPU)."""


class SecretFoundError(DispatchError):
    """A file that would enter the bundle holds (or is) a credential."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            f"refusing to bundle {path}: it looks like {what}",
            "remove the secret from the source tree (credentials never leave this machine) and dispatch again",
        )
        self.path = path
        self.what = what


class UnscannableFileError(DispatchError):
    """A file that would enter the bundle cannot be read back whole (corrupt compression): it cannot be vouched for."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"refusing to bundle {path}: it cannot be scanned for secrets ({problem})", "repair or remove the file"
        )
        self.path = path
        self.problem = problem


class RegistryError(DispatchError):
    """The run registry (`<home>/runs.db`) cannot be used (locked past the timeout, unreadable, a folder)."""

    def __init__(self, path: Path, problem: str, hint: str | None = None) -> None:
        super().__init__(f"cannot use the run registry {path}: {problem}", hint)
        self.path = path
        self.problem = problem


class RegistryCorruptError(RegistryError):
    """The registry file is not a readable SQLite database (corrupt, truncated, or another kind of file)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            path,
            f"it is not a readable SQLite database ({problem})",
            "move it aside with `chexvision status --repair` (or rename it by hand); a new empty registry is then"
            " created and the old file is kept for recovery",
        )


class InvalidCredentialsError(DispatchError):
    """A credentials file that cannot work as it is (bad JSON, a missing field): the user's to fix, not Kaggle's."""

    def __init__(self, path: Path, problem: str, hint: str) -> None:
        super().__init__(f"Kaggle credentials file {path} is not usable: {problem}", hint)
        self.path = path
        self.problem = problem


class KernelTooLargeError(DispatchError):
    """The rendered kernel script is over the backend's source limit."""

    def __init__(self, size: int, limit: int, backend: str, path: Path | None = None) -> None:
        super().__init__(
            f"rendered kernel script is {size:,} bytes, over {backend}'s {limit:,}-byte limit",
            "shrink the bundle (large package data?) — see `chexvision dispatch train --dry-run --out DIR`",
        )
        self.size = size
        self.limit = limit
        self.path = path


class UnknownRunError(DispatchError):
    """No run with this id in the registry."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in the registry", "list runs with `chexvision status`")
        self.run_id = run_id


class UnknownBackendError(DispatchError):
    """A backend name that is not registered."""

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown backend {name!r}", f"choose one of: {', '.join(valid)}")
        self.name = name
        self.valid = valid


class CapabilityError(DispatchError):
    """The job asks for something the chosen backend declares it cannot do."""

    def __init__(self, backend: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.backend = backend


class NotFoundError(DispatchError):
    """The backend has no such remote object (HTTP 404): a wrong id, or one already deleted."""


class PushRejectedError(DispatchError):
    """The backend refused the submission for a reason the user can fix (bad source, title, metadata)."""

    def __init__(self, error: str, hint: str | None = None) -> None:
        super().__init__(f"Kaggle rejected the kernel push: {error}", hint or "fix the kernel metadata and retry")
        self.error = error


class RunNotFinishedError(DispatchError):
    """The run has not ended yet (fetch needs a finished run)."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is still {status}", f"wait: `chexvision status {run_id} --watch`")
        self.run_id = run_id
        self.status = status


class RunEndedError(DispatchError):
    """The run ended in error or was cancelled."""

    exit_code = 1

    def __init__(self, run_id: str, status: str, reason: str | None) -> None:
        super().__init__(
            f"run {run_id} ended {status}: {reason or 'no reason recorded'}", f"see `chexvision logs {run_id}`"
        )
        self.run_id = run_id
        self.status = status
        self.reason = reason


class OutputsMissingError(DispatchError):
    """A finished run's downloaded outputs lack files its job declared."""

    exit_code = 1

    def __init__(self, run_dir: Path, missing: list[str]) -> None:
        super().__init__(
            f"run directory {run_dir} is not valid: {'; '.join(f'{name} missing' for name in missing)}",
            "check the run's log with `chexvision logs RUN_ID`; re-fetch with `chexvision fetch --run RUN_ID`",
        )
        self.run_dir = run_dir
        self.missing = missing


class BackendUnavailableError(DispatchError):
    """The backend could not be reached or refused us (network, auth, quota, throttling that did not clear)."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, hint)
        self.status_code = status_code
