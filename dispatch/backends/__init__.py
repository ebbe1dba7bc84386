"""Backends that run a rendered kernel: `local` (the embedded default) and `kaggle`."""

from __future__ import annotations

from dispatch.backends.base import Backend, LaunchRequest, RemoteState

__all__ = ["BACKENDS", "Backend", "LaunchRequest", "RemoteState", "get_backend"]

BACKENDS = ("kaggle", "local")


def get_backend(name: str) -> Backend:
    """A backend by name; heavy SDKs load only when a backend method needs them."""
    from chexvision.errors import BadInputError

    if name == "local":
        from dispatch.backends.local import LocalBackend

        return LocalBackend()
    if name == "kaggle":
        from dispatch.backends.kaggle import KaggleBackend

        return KaggleBackend()
    raise BadInputError(f"unknown backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
