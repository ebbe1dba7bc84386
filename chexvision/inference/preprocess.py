"""The one evaluation preprocessing of a trained model: its size, normalisation and the single CLAHE rule.

The rule: the input gets CLAHE when the images the model learnt from had it and the input does not already have
it. "Had it" is what training recorded in run.json (`dataset.clahe`: baked into the shards by `data build`, or
applied by the loader at decode time). "Already has it" is the input data folder's dataset.json (`clahe: true`);
image files (`predict`, `cam`, the demo) never have it.

Runs older than `dataset.clahe` fall back to what their training loader would have done: a `data.clahe` bool when
the config has one, else `data.aug.clahe` ("always" | "never" | "auto"); "auto" means CLAHE for every source but
synthetic images, the source taken from run.json, else from the input data folder (usually the training data).

Torch-free: the model card states the decision without importing torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chexvision.data.eval_transform import EvalTransform
from chexvision.data.transforms import CLAHE_CLIP, CLAHE_GRID, MEAN, STD
from chexvision.errors import BadInputError

__all__ = ["EvalTransform", "eval_transform", "input_has_clahe", "trained_with_clahe"]

log = logging.getLogger(__name__)


def _aug(config: Mapping[str, Any]) -> Mapping[str, Any]:
    data = config.get("data") or {}
    aug = data.get("aug") if isinstance(data.get("aug"), Mapping) else config.get("aug")
    return aug if isinstance(aug, Mapping) else {}


def trained_with_clahe(
    config: Mapping[str, Any], dataset: Mapping[str, Any] | None = None, data_meta: Mapping[str, Any] | None = None
) -> bool:
    """Whether the images the model learnt from had CLAHE (see the module docstring).

    `config` is config.json, `dataset` run.json's "dataset" block, `data_meta` the dataset.json of the data folder
    being evaluated (None for image files).
    """
    recorded = (dataset or {}).get("clahe")
    if isinstance(recorded, bool):
        return recorded
    data = config.get("data") or {}
    if isinstance(data.get("clahe"), bool):
        return bool(data["clahe"])
    mode = str(_aug(config).get("clahe", "auto"))
    if mode in ("always", "never"):
        return mode == "always"
    source = (dataset or {}).get("source")
    if source is None and data_meta is None:
        log.warning("config.json has clahe 'auto' and no data set source (run.json): assuming no CLAHE")
        return False
    if source is None:
        source = (data_meta or {}).get("source")
    return bool((data_meta or {}).get("clahe")) or source != "synthetic"


def input_has_clahe(data_meta: Mapping[str, Any] | None) -> bool:
    """Whether the input images already had CLAHE: a data folder whose dataset.json says so; never image files."""
    return bool((data_meta or {}).get("clahe", False))


def eval_transform(
    config: Mapping[str, Any], dataset: Mapping[str, Any] | None = None, *, data_dir: Path | None = None
) -> EvalTransform:
    """The transform for images of `data_dir` (shards), or for image files when `data_dir` is None."""
    from chexvision.data.shards import read_dataset_meta

    data = config.get("data") or {}
    if "size" not in data:
        raise BadInputError("config.json has no data.size", "re-train with a current version")
    meta = read_dataset_meta(Path(data_dir)) if data_dir is not None else None
    aug = _aug(config)
    return EvalTransform(
        size=int(data["size"]),
        mean=float(data.get("mean", MEAN)),
        std=float(data.get("std", STD)),
        clahe=trained_with_clahe(config, dataset, meta) and not input_has_clahe(meta),
        clahe_clip=float(aug.get("clahe_clip", CLAHE_CLIP)),
        clahe_grid=int(aug.get("clahe_grid", CLAHE_GRID)),
    )
