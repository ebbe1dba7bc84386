"""Hugging Face Hub: model cards, publishing a run (Hub or `--hub-dir` folder), loading a model back, predicting.

Names are imported lazily so `import chexvision.hub` stays cheap (the CLI imports it for `--help`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chexvision.hf import HubClient as HubClient
    from chexvision.hf import hub_ready as hub_ready
    from chexvision.hub.card import render_card as render_card
    from chexvision.hub.predict import Prediction as Prediction
    from chexvision.hub.predict import predict_spec as predict_spec
    from chexvision.hub.publish import PublishResult as PublishResult
    from chexvision.hub.publish import default_hub_dir as default_hub_dir
    from chexvision.hub.publish import publish_run as publish_run
    from chexvision.hub.resolve import load_model as load_model
    from chexvision.hub.resolve import load_spec as load_spec

__all__ = [
    "HubClient",
    "Prediction",
    "PublishResult",
    "default_hub_dir",
    "hub_ready",
    "load_model",
    "load_spec",
    "predict_spec",
    "publish_run",
    "render_card",
]

_WHERE = {
    "HubClient": "chexvision.hf",
    "Prediction": "chexvision.hub.predict",
    "PublishResult": "chexvision.hub.publish",
    "default_hub_dir": "chexvision.hub.publish",
    "hub_ready": "chexvision.hf",
    "load_model": "chexvision.hub.resolve",
    "load_spec": "chexvision.hub.resolve",
    "predict_spec": "chexvision.hub.predict",
    "publish_run": "chexvision.hub.publish",
    "render_card": "chexvision.hub.card",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
