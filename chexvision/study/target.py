"""Where a study publishes: the Hub or a folder in the Hub's repo layout (`[publish] target`)."""

from __future__ import annotations

from pathlib import Path

from chexvision.study.state import StudyState

__all__ = ["publish_target"]


def publish_target(state: StudyState) -> Path | None:
    """The folder to publish into, or None for the Hub (`[publish] target`; auto: the Hub when a token exists)."""
    from chexvision.hub import default_hub_dir, hub_ready

    pub = state.spec.publishing
    folder = Path(pub.hub_dir).expanduser() if pub.hub_dir else default_hub_dir()
    if pub.target == "folder" or (pub.target == "auto" and not hub_ready()):
        return folder
    return None
