"""Hugging Face Hub: model cards, publishing a run (Hub or `--hub-dir` folder), loading a model back, predicting.

Names are imported lazily so `import chexvision.hub` stays cheap (the CLI imports it for `--help`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chexvision.hub.card import render_card as render_card
    from chexvision.hub.client import HubClient as HubClient
    from chexvision.hub.client import hub_ready as hub_ready
    from chexvision.hub.load import load_model as load_model
    from chexvision.hub.predict import Prediction as Prediction
    from chexvision.hub.predict import predict_decoded as predict_decoded
    from chexvision.hub.predict import predict_files as predict_files
    from chexvision.hub.predict import preprocessing as preprocessing
    from chexvision.hub.publish import PublishResult as PublishResult
    from chexvision.hub.publish import default_hub_dir as default_hub_dir
    from chexvision.hub.publish import publish_run as publish_run

__all__ = [
    "HubClient",
    "Prediction",
    "PublishResult",
    "default_hub_dir",
    "hub_ready",
    "load_model",
    "predict_decoded",
    "predict_files",
    "preprocessing",
    "publish_run",
    "render_card",
]

_WHERE = {
    "HubClient": "chexvision.hub.client",
    "Prediction": "chexvision.hub.predict",
    "PublishResult": "chexvision.hub.publish",
    "default_hub_dir": "chexvision.hub.publish",
    "hub_ready": "chexvision.hub.client",
    "load_model": "chexvision.hub.load",
    "predict_decoded": "chexvision.hub.predict",
    "predict_files": "chexvision.hub.predict",
    "preprocessing": "chexvision.hub.predict",
    "publish_run": "chexvision.hub.publish",
    "render_card": "chexvision.hub.card",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
