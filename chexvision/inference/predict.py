"""Probabilities of the 14 findings and of "any finding" from a loaded model, plain or with TTA.

`predict_images` is the batched core (arrays in, arrays out) that evaluation runs over a split; `predict_files`
and `predict_decoded` answer for image files with the model's own preprocessing (`LoadedModel.transform()`), so
`chexvision predict`, the Hub loader and the demo give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.inference.images import read_image
from chexvision.labels import LABELS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from chexvision.inference.load import LoadedModel
    from chexvision.inference.preprocess import EvalTransform

__all__ = ["Prediction", "predict_decoded", "predict_files", "predict_images"]


@dataclass(frozen=True)
class Prediction:
    """One image's probabilities: the 14 findings in canonical order and any finding (abnormal).

    `decisions` ({rule: {"threshold", "abnormal"}}) holds the abnormal call at each operating point evaluation
    recorded (a `Predictor` fills it; {} when none was).
    """

    image: str
    probabilities: dict[str, float]
    abnormal: float
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "image": self.image,
            "probabilities": dict(self.probabilities),
            "abnormal": self.abnormal,
        }
        doc["decisions"] = {rule: dict(d) for rule, d in self.decisions.items()}
        return doc


def predict_images(
    model: nn.Module,
    images: Iterable[np.ndarray] | Iterator[np.ndarray],
    transform: EvalTransform,
    *,
    tta: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Probabilities [N, 15] (14 labels then binary) for uint8 images: `{"plain": ...}` (+ `"tta"` with `tta`)."""
    import torch

    from chexvision.device import resolve_device
    from chexvision.inference.tta import predict_views

    dev = resolve_device(device)
    out: dict[str, list[np.ndarray]] = {}
    buffer: list[np.ndarray] = []

    def flush() -> None:
        x = torch.from_numpy(np.stack(buffer)).to(dev)
        with torch.inference_mode():
            for key, probs in predict_views(model, x, tta=tta, black=transform.black).items():
                out.setdefault(key, []).append(probs.double().cpu().numpy())
        buffer.clear()

    model.eval()
    for img in images:
        buffer.append(transform(img))
        if len(buffer) == batch_size:
            flush()
    if buffer:
        flush()
    return {key: np.concatenate(parts) for key, parts in out.items()}


def predict_decoded(
    loaded: LoadedModel,
    names: Sequence[str | Path],
    decoded: Sequence[np.ndarray],
    *,
    tta: bool = False,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Probabilities for images already decoded by `read_image` (uint8 HxW), reported under `names`."""
    if not decoded:
        return []
    probs = predict_images(loaded.model, decoded, loaded.transform(), tta=tta, batch_size=batch_size, device=device)
    p = probs["tta" if tta else "plain"]
    return [
        Prediction(
            image=str(name),
            probabilities={label: float(p[i, j]) for j, label in enumerate(LABELS)},
            abnormal=float(p[i, len(LABELS)]),
        )
        for i, name in enumerate(names)
    ]


def predict_files(
    loaded: LoadedModel,
    images: Sequence[str | Path],
    *,
    tta: bool = False,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Probabilities for each image file. Every file is decoded first, so a bad one fails before any compute."""
    decoded = [read_image(Path(p)) for p in images]
    return predict_decoded(loaded, images, decoded, tta=tta, batch_size=batch_size, device=device)
