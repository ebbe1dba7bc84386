"""`Predictor`: one loaded model, where it came from, and its operating points; `predict(image)` in one call.

What `chexvision.load(spec)` returns and `chexvision predict` prints. A prediction carries the 14 finding
probabilities, the abnormal ("any finding") probability and, for each operating point evaluation recorded in
metrics.json (Youden's J and the target-sensitivity threshold of the binary head, chosen on validation or
cross-fitted), whether the abnormal probability reaches it. A model never evaluated has no operating points:
`decisions` is then empty and `Predictor.operating_points_note` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.errors import BadInputError
from chexvision.inference.images import read_image
from chexvision.inference.predict import Prediction, predict_decoded
from chexvision.labels import LABELS
from chexvision.rundir import METRICS_JSON

if TYPE_CHECKING:
    import torch
    from torch import nn

    from chexvision.inference.load import LoadedModel

__all__ = [
    "EVALUATED_SECTIONS",
    "EnsemblePrediction",
    "ImageInput",
    "ModelSource",
    "OperatingPoint",
    "Predictor",
    "member_names",
    "operating_points",
    "predict_ensemble",
]

EVALUATED_SECTIONS = ("test", "val_eval")  # metrics.json sections `chexvision evaluate` writes, preferred first
ImageInput = str | Path | np.ndarray | Any  # a file path, a gray/RGB(A) uint8 or uint16 array, or a PIL image


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: the spec asked for, the revision (tag, branch) and the commit that answered."""

    spec: str
    revision: str | None = None
    commit: str | None = None

    def describe(self) -> str:
        where = f"{self.spec}" if self.revision is None or self.spec.endswith(f"@{self.revision}") else (
            f"{self.spec}@{self.revision}"
        )  # fmt: skip
        return f"{where} (commit {self.commit[:12]})" if self.commit else where


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on the abnormal probability, as evaluation chose it (`rule`: youden | sensitivity_<target>)."""

    rule: str
    threshold: float
    fitted_on: str | None
    section: str

    @property
    def title(self) -> str:
        if self.rule == "youden":
            return "Youden"
        if self.rule.startswith("sensitivity_"):
            return f"sensitivity >= {self.rule.removeprefix('sensitivity_')}"
        return self.rule

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "fitted_on": self.fitted_on, "metrics_section": self.section}


def operating_points(metrics: Mapping[str, Any]) -> dict[str, OperatingPoint]:
    """The binary head's operating points in a run's metrics.json: those of the test evaluation, else of a
    validation evaluation; {} when neither recorded any (never evaluated, or a split with one class)."""
    for section in EVALUATED_SECTIONS:
        block = metrics.get(section)
        if not isinstance(block, Mapping):
            continue
        points = block.get("operating_points")
        if not isinstance(points, Mapping) or not points:
            continue
        fitted_on = block.get("fitted_on")
        return {
            str(rule): OperatingPoint(
                str(rule), float(row["threshold"]), str(fitted_on) if fitted_on else None, section
            )
            for rule, row in points.items()
            if isinstance(row, Mapping) and isinstance(row.get("threshold"), int | float)
        }
    return {}


def as_gray_uint8(image: Any) -> np.ndarray:
    """A gray, RGB or RGBA array (uint8, uint16 or float in [0, 1]) or a PIL image -> uint8 HxW gray."""
    import cv2

    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, without importing PIL
        image = np.asarray(image.convert("L"))
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2GRAY if arr.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise BadInputError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}", "pass one image")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    raise BadInputError(f"image arrays must be uint8, uint16 or float in [0, 1], got {arr.dtype}", "convert it")


class Predictor:
    """A model in eval mode that answers for image files or arrays with its own preprocessing (CLAHE rule included).

    >>> predictor = chexvision.load("owner/chexvision-densenet@v1")
    >>> p = predictor.predict("chest.png")
    >>> p.probabilities["Effusion"], p.abnormal, p.decisions
    """

    def __init__(
        self, loaded: LoadedModel, source: ModelSource | None = None, *, device: str | torch.device = "cpu"
    ) -> None:
        self.loaded = loaded
        self.source = source or ModelSource(str(loaded.run_dir))
        self.device = device
        self.operating_points = operating_points(loaded.info.metrics)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(getattr(self.model, "labels", LABELS))

    @property
    def name(self) -> str:
        """The run id that trained the model (the folder name when run.json is absent)."""
        return self.loaded.name

    @property
    def architecture(self) -> str:
        return self.loaded.info.model_name

    @property
    def trained_on(self) -> str | None:
        """run.json's dataset.source: "hf", "nih", "synthetic", ...; None when the folder lacks run.json."""
        source = self.loaded.dataset.get("source")
        return str(source) if source else None

    @property
    def synthetic(self) -> bool:
        return self.trained_on == "synthetic"

    @property
    def operating_points_note(self) -> str | None:
        """Why there are no decisions (None when there are)."""
        if self.operating_points:
            return None
        return f"operating points: none recorded in {METRICS_JSON} (`chexvision evaluate RUN_DIR` chooses them)"

    def describe(self) -> dict[str, Any]:
        """The model that answers, as JSON: spec, revision, commit, run id, architecture, training data and the
        operating points (`{rule: {threshold, fitted_on, metrics_section}}`, {} when none was recorded)."""
        return {
            "spec": self.source.spec,
            "revision": self.source.revision,
            "commit": self.source.commit,
            "run_id": self.name,
            "architecture": self.architecture,
            "trained_on": self.trained_on,
            "synthetic": self.synthetic,
            "operating_points": {rule: op.to_dict() for rule, op in self.operating_points.items()},
        }

    def decide(self, abnormal: float) -> dict[str, dict[str, Any]]:
        """`{rule: {"threshold", "abnormal"}}`: abnormal when the probability reaches the threshold (>=, as
        evaluation counted it)."""
        return {
            rule: {"threshold": op.threshold, "abnormal": bool(abnormal >= op.threshold)}
            for rule, op in self.operating_points.items()
        }

    def predict_decoded(
        self, names: Sequence[str | Path], decoded: Sequence[np.ndarray], *, tta: bool = False, batch_size: int = 16
    ) -> list[Prediction]:
        """Predictions for uint8 HxW gray images (as `read_image` gives them), reported under `names`."""
        rows = predict_decoded(self.loaded, names, decoded, tta=tta, batch_size=batch_size, device=self.device)
        return [Prediction(r.image, r.probabilities, r.abnormal, decisions=self.decide(r.abnormal)) for r in rows]

    def predict_many(
        self, images: Sequence[ImageInput], *, tta: bool = False, batch_size: int = 16
    ) -> list[Prediction]:
        """Predictions for several images (paths or arrays); every one is decoded before any compute."""
        names = [str(im) if isinstance(im, str | Path) else f"<image {i}>" for i, im in enumerate(images)]
        decoded = [read_image(Path(im)) if isinstance(im, str | Path) else as_gray_uint8(im) for im in images]
        return self.predict_decoded(names, decoded, tta=tta, batch_size=batch_size)

    def predict(self, image: ImageInput, *, tta: bool = False) -> Prediction:
        """One image (a file path, an array or a PIL image) -> its `Prediction`: `probabilities` {label: p},
        `abnormal` p, `decisions` {rule: {threshold, abnormal}}."""
        return self.predict_many([image], tta=tta)[0]

    def __call__(self, image: ImageInput, *, tta: bool = False) -> Prediction:
        return self.predict(image, tta=tta)

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, {self.architecture}, from {self.source.describe()})"


@dataclass(frozen=True)
class EnsemblePrediction:
    """One image under several models: each model's `Prediction` (with its own operating-point decisions) and
    their mean probabilities, the ensemble (no operating point of its own: none was chosen for the mean)."""

    image: str
    members: tuple[str, ...]  # one column name per model (`member_names`)
    predictions: tuple[Prediction, ...]
    mean: Prediction

    def to_dict(self, about: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The ensemble's row: its mean at the top (`probabilities`, `abnormal`, `decisions` {}), then `models`:
        one {name, probabilities, abnormal, decisions, model} per member (`about`: each `Predictor.describe()`)."""
        return {
            **self.mean.to_dict(),
            "ensemble": {"rule": "mean probability", "members": list(self.members)},
            "models": [
                {"name": name, **{k: v for k, v in p.to_dict().items() if k != "image"}, "model": dict(info)}
                for name, p, info in zip(self.members, self.predictions, about, strict=True)
            ],
        }


def member_names(predictors: Sequence[Predictor]) -> tuple[str, ...]:
    """A column name per model: its run id, numbered when two models share one (the same run named twice)."""
    names: list[str] = []
    for p in predictors:
        name, n = p.name, 2
        while name in names:
            name, n = f"{p.name} #{n}", n + 1
        names.append(name)
    return tuple(names)


def predict_ensemble(
    predictors: Sequence[Predictor], names: Sequence[str | Path], decoded: Sequence[np.ndarray], *, tta: bool = False
) -> list[EnsemblePrediction]:
    """Each model on the same decoded images (each with its own preprocessing), and the mean of their
    probabilities (14 findings and abnormal) per image."""
    if not predictors:
        raise BadInputError("an ensemble needs at least one model", "pass --model SPEC (repeat it for more)")
    per_model = [p.predict_decoded(names, decoded, tta=tta) for p in predictors]
    members = member_names(predictors)
    rows = []
    for i, name in enumerate(names):
        preds = tuple(m[i] for m in per_model)
        mean = Prediction(
            image=str(name),
            probabilities={k: float(np.mean([p.probabilities[k] for p in preds])) for k in preds[0].probabilities},
            abnormal=float(np.mean([p.abnormal for p in preds])),
        )
        rows.append(EnsemblePrediction(str(name), members, preds, mean))
    return rows
