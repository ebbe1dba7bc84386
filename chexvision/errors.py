"""One errors module: every failure the CLI can explain carries a message, a fix and an exit code.

Exit codes (DESIGN §7): 0 ok, 1 the run/job failed, 2 bad input or usage, 3 a remote service or backend failed.
"""

from __future__ import annotations

__all__ = ["BackendError", "BadInputError", "CheXVisionError", "RunFailedError"]


class CheXVisionError(Exception):
    """Base error. `hint` is the fix or the next command to run; `exit_code` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class BadInputError(CheXVisionError):
    """Bad input or usage: a corrupt file, a missing column, an unknown name, a missing credential."""

    exit_code = 2


class RunFailedError(CheXVisionError):
    """The run or job itself failed (training diverged, a remote run ended in error)."""

    exit_code = 1


class BackendError(CheXVisionError):
    """A remote service or backend failed: network, auth, quota, throttling that did not clear."""

    exit_code = 3
