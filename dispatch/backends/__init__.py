"""The backend registry: name -> lazily imported class ("module:Class"), so `status` loads only what it asks.

A duplicate name raises; an unknown name raises `UnknownBackendError` listing the valid ones. The default backend
is the configured one with the highest `Capabilities.auto_priority` (Kaggle when its credentials exist, else local).

Adding a backend is one module (or package, like `kaggle/` and `skypilot/`) plus its tests:

1. `dispatch/backends/<name>.py` (or a package): a `Backend` subclass with
   - `name`, `title` and a frozen `capabilities = Capabilities(...)`: the data-source kinds and GPUs it accepts,
     its concurrency and source-size limits, default time budget, whether it is remote, has live outputs, can
     cancel and follow logs, and its `auto_priority` for the default choice;
   - `unavailable_reason()` (classmethod, no network): why it cannot be used now, or None;
   - `_submit(rendered, request) -> Launched(status, handle)`: start the rendered `train.py`; the handle is a
     JSON-able dict the registry keeps and only this backend reads (`_poll`, `_logs`, `_cancel`, `_download`);
   - `_poll(record) -> RemoteState`, `_logs(record) -> str`, `_cancel(record) -> RemoteState` (idempotent),
     `_download(record, dest) -> list[Path]` (resumable), `_describe(handle) -> str`;
   - optional: `_preflight` (credentials, quota), `_render_extra` (files beside the script, e.g. Kaggle's
     kernel-metadata.json), `_restore_source(parent)` (where a continued run finds its parent's outputs),
     `live_output(record)`.
   The kernel script is the same everywhere: run it with `DISPATCH_KERNEL_INPUT/WORKING/SCRATCH` pointing at its
   folders (defaults are Kaggle's) and read `chexvision-status.json` from the output folder for the final state.
2. One line in `BACKENDS` below (or `register_backend(name, "module:Class")` from a plugin).
3. Tests: add it to the parametrisation of tests/test_backend_contract.py (with a fake at its client boundary if
   it talks to a service); the contract suite then checks render, submit, poll, logs, cancel and download.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dispatch.backends.base import Backend, Capabilities, Launched, LaunchRequest, RemoteState
from dispatch.errors import UnknownBackendError

__all__ = [
    "BACKENDS",
    "Backend",
    "Capabilities",
    "LaunchRequest",
    "Launched",
    "RemoteState",
    "backend_class",
    "backend_names",
    "choose_backend",
    "get_backend",
    "register_backend",
]

# name -> "module:Class", imported on first use.
BACKENDS: dict[str, str] = {
    "kaggle": "dispatch.backends.kaggle:KaggleBackend",
    "local": "dispatch.backends.local:LocalBackend",
    "skypilot": "dispatch.backends.skypilot:SkyPilotBackend",
}


def register_backend(name: str, target: str) -> None:
    """Add a backend; `target` is "module:Class". A name already registered raises ValueError."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered ({BACKENDS[name]})")
    if target.count(":") != 1:
        raise ValueError(f"backend target {target!r} is not 'module:Class'")
    BACKENDS[name] = target


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name`, imported now."""
    if name not in BACKENDS:
        raise UnknownBackendError(name, backend_names())
    module, _, attr = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)) or cls.name != name:
        raise TypeError(f"{BACKENDS[name]} is not the Backend named {name!r}")
    return cls


def get_backend(name: str, home: Path) -> Backend:
    """A backend by name, working in the caller's home folder; heavy SDKs load only when a method needs them."""
    return backend_class(name)(home)


def choose_backend() -> tuple[str, str | None]:
    """(name, notice): the configured backend with the highest auto priority, and why a preferred one was not."""
    ranked = sorted(
        (cls for cls in map(backend_class, backend_names()) if cls.capabilities.auto_priority > 0),
        key=lambda cls: -cls.capabilities.auto_priority,
    )
    skipped: list[tuple[type[Backend], str]] = []
    for cls in ranked:
        reason = cls.unavailable_reason()
        if reason is None:
            if not skipped:
                return cls.name, None
            first, why = skipped[0]
            return cls.name, f"{why}: running on the {cls.name} backend (--backend {first.name} to change)"
        skipped.append((cls, reason))
    raise UnknownBackendError("(default)", backend_names())
