"""Predict the 14 findings and the abnormal probability for image files with a loaded model.

Preprocessing is the evaluation transform training used (`chexvision.evaluate.inference.EvalTransform`: decode to
8-bit gray -> resize (INTER_AREA) -> CLAHE when the run used it -> normalise with the run's mean/std), so there is
one definition of it in the code base. `--tta` averages probabilities over identity, h-flip and +-7 degree
rotations (`chexvision.evaluate.tta`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.data.shards import ImageDecodeError, decode_image
from chexvision.errors import BadInputError
from chexvision.labels import LABELS

if TYPE_CHECKING:
    from torch import nn

    from chexvision.evaluate.inference import EvalTransform

__all__ = ["Prediction", "predict_decoded", "predict_files", "preprocessing", "read_image", "trained_with_clahe"]

log = logging.getLogger(__name__)

IMAGE_HINT = "pass PNG or JPEG files (gray, RGB or RGBA; 8 or 16 bit)"


@dataclass(frozen=True)
class Prediction:
    """One image's probabilities: the 14 findings in canonical order and any finding (abnormal)."""

    image: str
    probabilities: dict[str, float]
    abnormal: float

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "probabilities": dict(self.probabilities), "abnormal": self.abnormal}


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 HxW gray; an unreadable file is a BadInputError naming it."""
    try:
        return decode_image(Path(path).read_bytes())
    except FileNotFoundError:
        raise BadInputError(f"image {path} not found", "check the path") from None
    except (OSError, ImageDecodeError) as exc:
        raise BadInputError(f"cannot read image {path}: {exc}", IMAGE_HINT) from exc


def trained_with_clahe(config: Mapping[str, Any]) -> bool:
    """Whether the images the model was trained on had CLAHE, from config.json (+ run.json's data set).

    Training records the answer in run.json (`dataset.clahe`). For runs without it: `data.aug.clahe` is "always" |
    "never" | "auto"; "auto" means CLAHE for every source but synthetic data (either the loader applied it at decode
    time or `data build` baked it into the shards). A plain `data.clahe` bool wins when present.
    """
    recorded = (config.get("dataset") or {}).get("clahe")
    if isinstance(recorded, bool):
        return recorded
    data = dict(config.get("data") or {})
    if isinstance(data.get("clahe"), bool):
        return bool(data["clahe"])
    aug = data.get("aug") if isinstance(data.get("aug"), Mapping) else config.get("aug")
    mode = (aug or {}).get("clahe", "auto") if isinstance(aug, Mapping) else "auto"
    if mode in ("always", "never"):
        return mode == "always"
    source = (config.get("dataset") or {}).get("source")
    if source is None:
        log.warning("config.json has clahe 'auto' and no data set source (run.json): assuming no CLAHE")
    return source not in ("synthetic", None)


def preprocessing(config: Mapping[str, Any]) -> EvalTransform:
    """The evaluation transform of a run, from its config.json (size, mean, std, CLAHE)."""
    from chexvision.evaluate.inference import EvalTransform

    return replace(EvalTransform.from_config(dict(config)), clahe=trained_with_clahe(config))


def predict_files(
    model: nn.Module,
    config: Mapping[str, Any],
    images: Sequence[str | Path],
    *,
    tta: bool = False,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[Prediction]:
    """Probabilities for each image file. Every file is decoded first, so a bad one fails before any compute."""
    decoded = [read_image(Path(p)) for p in images]
    return predict_decoded(model, config, images, decoded, tta=tta, batch_size=batch_size, device=device)


def predict_decoded(
    model: nn.Module,
    config: Mapping[str, Any],
    names: Sequence[str | Path],
    decoded: Sequence[np.ndarray],
    *,
    tta: bool = False,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[Prediction]:
    """Probabilities for images already decoded by `read_image` (uint8 HxW), reported under `names`."""
    from chexvision.evaluate.inference import predict_images

    if not decoded:
        return []
    probs = predict_images(model, decoded, preprocessing(config), tta=tta, batch_size=batch_size, device=device)
    p = probs["tta" if tta else "plain"]
    return [
        Prediction(
            image=str(name),
            probabilities={label: float(p[i, j]) for j, label in enumerate(LABELS)},
            abnormal=float(p[i, len(LABELS)]),
        )
        for i, name in enumerate(names)
    ]
