"""One errors module: every failure the CLI can explain carries a message, a fix and an exit code.

Exit codes (DESIGN §7): 0 ok, 1 the run/job failed, 2 bad input or usage, 3 a remote service or backend failed.
The errors with fields subclass the one whose exit code they share, so `except BadInputError` still catches an
`UnknownName`; `chexvision/cli/_errors.py` maps them to the one line the user sees.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "BackendError",
    "BadInputError",
    "CheXVisionError",
    "ConfigKeyError",
    "RemoteError",
    "RemoteNotFoundError",
    "RunFailedError",
    "UnknownName",
]


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


class UnknownName(BadInputError):
    """A name that is not one of `valid` (a model, preset, split scheme, device, ...).

    The one line names the closest valid name (difflib) and lists them all: `unknown preset 'smok' — did you mean
    'smoke'? choose one of: smoke, kaggle-t4, full`. `hint` replaces that default where a command says it better.
    """

    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.valid: tuple[str, ...] = tuple(valid)
        close = difflib.get_close_matches(name, self.valid, n=1)
        self.suggestion: str | None = close[0] if close else None
        if hint is None:
            listed = f"choose one of: {', '.join(self.valid)}"
            hint = f"did you mean {self.suggestion!r}? {listed}" if self.suggestion else listed
        super().__init__(f"unknown {kind} {name!r}", hint)


class ConfigKeyError(BadInputError):
    """A config key the schema does not have; `suggestions` are the close keys (may be empty)."""

    def __init__(self, key: str, suggestion: str | Sequence[str] | None = None) -> None:
        self.key = key
        if suggestion is None:
            self.suggestions: tuple[str, ...] = ()
        else:
            self.suggestions = (suggestion,) if isinstance(suggestion, str) else tuple(suggestion)
        hint = (
            f"did you mean {', '.join(self.suggestions)}?"
            if self.suggestions
            else "see the presets in chexvision/presets/"
        )
        super().__init__(f"unknown config key {key!r}", hint)

    @property
    def suggestion(self) -> str | None:
        """The closest key, if any."""
        return self.suggestions[0] if self.suggestions else None


class RemoteError(BackendError):
    """A remote service failed or refused: network, auth (HTTP 401/403), throttling, 5xx. Exit 3.

    `service` names it ("Hugging Face Hub", "Kaggle"); `status` is the HTTP status when there was a response.
    """

    def __init__(self, service: str, status: int | None, message: str, hint: str | None = None) -> None:
        self.service = service
        self.status = status
        super().__init__(message, hint)


class RemoteNotFoundError(BadInputError):
    """The remote service answered that the thing asked for does not exist (HTTP 404: repo, revision, file).

    A wrong name or revision is bad input (exit 2), not a failing service; the fields are RemoteError's.
    """

    def __init__(self, service: str, message: str, hint: str | None = None, status: int | None = 404) -> None:
        self.service = service
        self.status = status
        super().__init__(message, hint)
