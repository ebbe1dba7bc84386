"""What the demo page shows, as plain data: no Streamlit here, so every piece is testable on its own.

The input (a bundled NIH sample or an upload: PNG, JPEG or DICOM) -> uint8 gray (`decode_input`); the models'
predictions and their ensemble (`analyse`: the mean probability, as `chexvision predict` with several `--model`s);
the abnormal calls at each model's operating points (`decision_rows`); the table of the 14 probabilities
(`probability_table`); Grad-CAM maps of the top findings, averaged over the models (`ensemble_cams`); and what each
model's card says about it (`model_rows`: run, architecture, revision, test AUC and the split it was measured on).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.errors import BadInputError
from chexvision.inference.images import decode_bytes, decode_dicom, is_dicom
from chexvision.labels import LABELS

if TYPE_CHECKING:
    import pandas as pd

    from chexvision.inference.predictor import EnsemblePrediction, Predictor

__all__ = [
    "ENSEMBLE",
    "MODELS_ENV",
    "Analysis",
    "DecodedInput",
    "Sample",
    "analyse",
    "decision_rows",
    "decode_input",
    "ensemble_cams",
    "load_samples",
    "model_rows",
    "model_specs",
    "probability_table",
]

MODELS_ENV = "CHEXVISION_DEMO_MODELS"  # model specs, joined by os.pathsep
ENSEMBLE = "ensemble (mean)"
UPLOAD_TYPES = ("png", "jpg", "jpeg", "dcm", "dicom")
NO_MODELS_HINT = "start it with `chexvision demo --model SPEC` (or set CHEXVISION_DEMO_MODELS)"


def model_specs(value: str | None = None) -> list[str]:
    """The model specs the app serves: `value` (default: $CHEXVISION_DEMO_MODELS) split on os.pathsep."""
    raw = os.environ.get(MODELS_ENV, "") if value is None else value
    specs = [s.strip() for s in raw.split(os.pathsep) if s.strip()]
    if not specs:
        raise BadInputError(f"no model given ({MODELS_ENV} is empty)", NO_MODELS_HINT)
    return specs


@dataclass(frozen=True)
class Sample:
    """A bundled real NIH X-ray and its NIH labels (text-mined from the report: noisy)."""

    file: str
    image_index: str
    labels: tuple[str, ...]
    age: int
    sex: str
    view: str

    @property
    def title(self) -> str:
        found = ", ".join(self.labels) if self.labels else "No Finding"
        return f"{self.image_index}: {found} ({self.sex}, {self.age}, {self.view})"

    def read_bytes(self) -> bytes:
        return (resources.files("chexvision.demo") / "samples" / self.file).read_bytes()


def load_samples() -> list[Sample]:
    """The bundled sample cases (package data `chexvision/demo/samples/`), in the order the page lists them."""
    doc = json.loads((resources.files("chexvision.demo") / "samples" / "samples.json").read_text(encoding="utf-8"))
    return [
        Sample(c["file"], c["image_index"], tuple(c["labels"]), int(c["age"]), str(c["sex"]), str(c["view"]))
        for c in doc["cases"]
    ]


@dataclass(frozen=True)
class DecodedInput:
    """An input image as the models take it (uint8 HxW gray) and a line on how it was read."""

    name: str
    pixels: np.ndarray
    note: str


def decode_input(name: str, data: bytes) -> DecodedInput:
    """PNG/JPEG (gray, RGB, RGBA; 8 or 16 bit) or DICOM bytes -> `DecodedInput`; a BadInputError naming `name`."""
    if not data:
        raise BadInputError(f"{name} is empty", "upload a PNG, JPEG or DICOM chest X-ray")
    if is_dicom(data, name):
        dicom = decode_dicom(data, name)
        return DecodedInput(name, dicom.pixels, dicom.describe())
    pixels = decode_bytes(data, name)
    return DecodedInput(name, pixels, f"{Path(name).suffix.lstrip('.').upper() or 'image'} {pixels.shape[1]}x"
                                      f"{pixels.shape[0]} px")  # fmt: skip


@dataclass(frozen=True)
class Analysis:
    """One image under the app's models: the ensemble row (per model and mean), and Grad-CAM maps of the top
    findings (`cam_labels`; `cams` [k, S, S] in [0, 1] over `cam_base`, the input resized to S)."""

    row: EnsemblePrediction
    tta: bool
    cam_labels: tuple[str, ...] = ()
    cams: np.ndarray | None = None
    cam_base: np.ndarray | None = None
    cam_models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def headline(self) -> Any:
        """The prediction the page leads with: the only model's, or the ensemble mean."""
        return self.row.predictions[0] if len(self.row.predictions) == 1 else self.row.mean


def analyse(predictors: Sequence[Predictor], image: DecodedInput, *, tta: bool = False, top_k: int = 3) -> Analysis:
    """Every model's prediction, the ensemble mean, and Grad-CAM maps of the ensemble's `top_k` findings."""
    from chexvision.inference.predictor import predict_ensemble

    (row,) = predict_ensemble(predictors, [image.name], [image.pixels], tta=tta)
    if top_k <= 0:
        return Analysis(row, tta)
    mean = np.array([row.mean.probabilities[label] for label in LABELS])
    classes = [int(i) for i in np.argsort(-mean, kind="stable")[:top_k]]
    base, cams = ensemble_cams(predictors, image.pixels, classes)
    return Analysis(row, tta, tuple(LABELS[i] for i in classes), cams, base, row.members)


def ensemble_cams(
    predictors: Sequence[Predictor], image: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(the input resized to the largest model size S, maps [len(classes), S, S]): each model's Grad-CAM under its
    own preprocessing, upsampled to S and averaged (each map scaled to [0, 1] first, so no model dominates), the
    mean scaled back to a peak of 1."""
    from chexvision.data.transforms import resize_to
    from chexvision.inference.cam import cam_maps

    size = max(p.loaded.transform().size for p in predictors)
    maps = np.mean([cam_maps(p.loaded, image, classes, (size, size)) for p in predictors], axis=0)
    peak = maps.reshape(len(maps), -1).max(axis=1).clip(min=1e-12)[:, None, None]
    return resize_to(image, size), maps / peak  # the mean's peak is 1 again, as the colour bar says


def probability_table(row: EnsemblePrediction) -> pd.DataFrame:
    """The 14 findings (rows, canonical order) by model (a column per model, then the ensemble mean when there
    are several), plus the abnormal ("any finding") probability as the last row."""
    import pandas as pd

    columns: dict[str, list[float]] = {}
    preds = list(zip(row.members, row.predictions, strict=True))
    if len(preds) > 1:
        preds.append((ENSEMBLE, row.mean))
    for name, p in preds:
        columns[name] = [p.probabilities[label] for label in LABELS] + [p.abnormal]
    index = pd.Index([*LABELS, "abnormal (any finding)"], name="finding")
    return pd.DataFrame(columns, index=index)


def decision_rows(predictors: Sequence[Predictor], row: EnsemblePrediction) -> list[dict[str, Any]]:
    """One row per model and operating point: model, rule (named: Youden, sensitivity >= 0.95), threshold, where
    it was chosen, the abnormal probability and the call. A model without operating points gives one row saying so."""
    out: list[dict[str, Any]] = []
    for name, predictor, pred in zip(row.members, predictors, row.predictions, strict=True):
        if not predictor.operating_points:
            out.append({"model": name, "operating point": "none recorded", "threshold": None,
                        "call": "no call: run `chexvision evaluate`", "p(abnormal)": pred.abnormal,
                        "chosen on": "-"})  # fmt: skip
            continue
        for rule, op in predictor.operating_points.items():
            call = pred.decisions[rule]["abnormal"]
            out.append({"model": name, "operating point": op.title, "threshold": op.threshold,
                        "call": "ABNORMAL" if call else "normal", "p(abnormal)": pred.abnormal,
                        "chosen on": op.fitted_on or op.section})  # fmt: skip
    return out


def _test_block(metrics: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    for section, title in (("test", "test"), ("val_eval", "validation (evaluated)"), ("val", "validation")):
        block = metrics.get(section)
        if isinstance(block, Mapping) and isinstance(block.get("macro_auc"), int | float):
            return block, title
    return None


def model_rows(predictors: Sequence[Predictor], names: Sequence[str]) -> list[dict[str, Any]]:
    """What each model's card states: run, architecture, spec, revision and commit, trained on, the macro and
    binary AUC of its card's results (the test evaluation when there is one, else validation) and the split they
    were measured on (scheme and, for an evaluation, the image count)."""
    out = []
    for name, p in zip(names, predictors, strict=True):
        about = p.describe()
        found = _test_block(p.loaded.info.metrics)
        block, where = found if found else ({}, "not evaluated")
        split: Mapping[str, Any] = block["split"] if isinstance(block.get("split"), Mapping) else {}
        scheme = p.loaded.info.recorded_split_scheme or "?"
        count = f", {split['count']} images" if split.get("count") else ""
        out.append({
            "model": name,
            "architecture": p.architecture,
            "macro AUC": block.get("macro_auc"),
            "abnormal AUC": block.get("binary_auc"),
            "measured on": f"{where}, `{scheme}` split{count}" if found else where,
            "trained on": about["trained_on"] or "?",
            "revision": about["revision"] or "-",
            "commit": (about["commit"] or "-")[:12],
            "spec": about["spec"],
        })  # fmt: skip
    return out
