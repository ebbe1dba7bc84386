"""The CLI's hint table: error type -> the one line on stderr and the exit code (huggingface_hub `cli/_errors.py`).

DESIGN §7: exit 1 the run/job failed, 2 bad input or usage, 3 a remote service or backend failed. Each error carries
its own message, hint (the fix or next command) and exit code; this table says which types the root group turns
into one line instead of a traceback. Types are matched by their dotted name along the error's MRO, so nothing is
imported here: `dispatch.errors` is optional at import and `--help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HINTS", "render_error"]

Rendered = tuple[str, int]  # (the line for stderr, the exit code)


def _own(exc: BaseException) -> Rendered:
    """The error's own one line and exit code (`.one_line()`, `.exit_code`: chexvision and dispatch errors)."""
    one_line = getattr(exc, "one_line", None)
    text = one_line() if callable(one_line) else str(getattr(exc, "message", exc))
    return f"error: {text}", int(getattr(exc, "exit_code", 1))


# Most specific first within a hierarchy; the first type on the error's MRO that is in the table wins.
HINTS: dict[str, Callable[[BaseException], Rendered]] = {
    "chexvision.errors.RemoteError": _own,  # exit 3: network, auth, throttling, 5xx (field: service, status)
    "chexvision.errors.RemoteNotFoundError": _own,  # exit 2: the repo/revision/file does not exist
    "chexvision.errors.UnknownName": _own,  # exit 2: names the closest valid name and lists them
    "chexvision.errors.ConfigKeyError": _own,  # exit 2: names the close keys
    "chexvision.errors.CheXVisionError": _own,  # BadInputError 2, RunFailedError 1, BackendError 3
    "dispatch.errors.DispatchError": _own,  # dispatch's root error: .message, .hint, .exit_code, .one_line()
}


def render_error(exc: BaseException) -> Rendered | None:
    """The one line and exit code for `exc`, or None when the table does not know its type (let it propagate)."""
    for cls in type(exc).__mro__:
        rule = HINTS.get(f"{cls.__module__}.{cls.__name__}")
        if rule is not None:
            return rule(exc)
    return None
