"""The CLI's hint table: error type -> the one line on stderr and the exit code (huggingface_hub `cli/_errors.py`).

DESIGN §7: exit 1 the run/job failed, 2 bad input or usage, 3 a remote service or backend failed. Each error carries
its own message, hint (the fix or next command) and exit code; this table says which types the root group turns
into one line instead of a traceback. Types are matched by their dotted name along the error's MRO, so nothing is
imported here: `dispatch.errors` is optional at import and `--help` stays fast. Two more kinds become one line
with exit 2: the OS refusing a path the user gave (a file where a folder goes, no permission) and click's usage
errors (`usage_line`: unknown option/command/choice, missing option, a number out of bounds).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HINTS", "render_error", "usage_line"]

Rendered = tuple[str, int]  # (the line for stderr, the exit code)


def _own(exc: BaseException) -> Rendered:
    """The error's own one line and exit code (`.one_line()`, `.exit_code`: chexvision and dispatch errors)."""
    one_line = getattr(exc, "one_line", None)
    text = one_line() if callable(one_line) else str(getattr(exc, "message", exc))
    return f"error: {text}", int(getattr(exc, "exit_code", 1))


_PATH_PROBLEMS = {
    "FileExistsError": ("exists and is not a folder", "pass a folder path, or move that file away"),
    "NotADirectoryError": ("has a file where a folder is needed", "pass a folder path, or move that file away"),
    "IsADirectoryError": ("is a folder, not a file", "pass a file path"),
    "PermissionError": ("cannot be written or read (permission denied)", "choose a path you may write, or fix it"),
}


def _path(exc: BaseException) -> Rendered:
    """An output or input path the OS refused (a file where a folder goes, no permission): bad input, exit 2."""
    what, hint = _PATH_PROBLEMS.get(type(exc).__name__, ("cannot be used", "check the path"))
    name = getattr(exc, "filename", None)
    return (f"error: {name} {what} — {hint}" if name else f"error: {exc} — {hint}"), 2


# Most specific first within a hierarchy; the first type on the error's MRO that is in the table wins.
HINTS: dict[str, Callable[[BaseException], Rendered]] = {
    "chexvision.errors.RemoteError": _own,  # exit 3: network, auth, throttling, 5xx (field: service, status)
    "chexvision.errors.RemoteNotFoundError": _own,  # exit 2: the repo/revision/file does not exist
    "chexvision.errors.UnknownName": _own,  # exit 2: names the closest valid name and lists them
    "chexvision.errors.ConfigKeyError": _own,  # exit 2: names the close keys
    "chexvision.errors.CheXVisionError": _own,  # BadInputError 2, RunFailedError 1, BackendError 3
    "dispatch.errors.DispatchError": _own,  # dispatch's root error: .message, .hint, .exit_code, .one_line()
    # the OS refusing a path the user gave (`--out FILE`, `--hub-dir FILE`, a read-only folder): exit 2
    **{f"builtins.{name}": _path for name in _PATH_PROBLEMS},
}


def render_error(exc: BaseException) -> Rendered | None:
    """The one line and exit code for `exc`, or None when the table does not know its type (let it propagate)."""
    for cls in type(exc).__mro__:
        rule = HINTS.get(f"{cls.__module__}.{cls.__name__}")
        if rule is not None:
            return rule(exc)
    return None


def usage_line(exc: BaseException) -> str | None:
    """A usage error (unknown option, command or choice; missing option or argument) as one line, else None.

    Typer vendors click, so its UsageError is matched by name, like the table above. click's own text already names
    the option, the bad value and the valid choices (some over several lines: joined). `NoArgsIsHelpError` (a bare
    `chexvision data`) is the help the user asked for: None.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "UsageError" not in names or "NoArgsIsHelpError" in names:
        return None
    text = " ".join(exc.format_message().split()).replace("Value error, ", "")  # type: ignore[attr-defined]
    text = text[:1].lower() + text[1:].rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"error: {text} — see `{ctx.command_path} --help`" if ctx is not None else f"error: {text}"
