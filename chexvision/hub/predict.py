"""Predict image files with a model named by a spec (`owner/name@rev`, a folder, `FOLDER@TAG`).

The spec is resolved here (`chexvision.hub.resolve`); loading, preprocessing (the run's own, CLAHE included) and
prediction are `chexvision.inference`'s, so every way of predicting gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chexvision.inference.images import read_image
from chexvision.inference.predict import Prediction, predict_decoded

if TYPE_CHECKING:
    from chexvision.hf import HubClient

__all__ = ["Prediction", "predict_spec"]


def predict_spec(
    spec: str,
    images: Sequence[str | Path],
    *,
    tta: bool = False,
    device: str = "cpu",
    client: HubClient | None = None,
) -> list[Prediction]:
    """Probabilities for each image file under the model of `spec`.

    Every image is decoded first, so a bad one fails before the model is loaded (or downloaded).
    """
    from chexvision.hub.resolve import load_spec

    decoded = [read_image(Path(p)) for p in images]
    loaded = load_spec(spec, client=client, device=device)
    return predict_decoded(loaded, images, decoded, tta=tta, device=device)
