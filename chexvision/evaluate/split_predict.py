"""Run a loaded model over a split of a data set: probabilities, labels, file names and patient ids.

Images get the model's evaluation transform for that data folder (`LoadedModel.transform(data_dir)`: the one
CLAHE rule of `chexvision.inference.preprocess`); the split is rebuilt from the run's split scheme and seed, so
the test images are exactly the ones training never saw.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.data.splits import make_split, patient_ids
from chexvision.errors import BadInputError
from chexvision.evaluate.predictions import Predictions
from chexvision.inference.predict import predict_images
from chexvision.labels import label_matrix
from chexvision.rundir import RunInfo

if TYPE_CHECKING:
    import torch

    from chexvision.inference.load import LoadedModel

__all__ = ["SPLITS", "predict_split", "split_indices", "split_scheme_of"]

log = logging.getLogger(__name__)
SPLITS = ("test", "val", "train")


def split_scheme_of(info: RunInfo, data_dir: Path | None = None) -> str:
    """The scheme training used (config, run.json, metrics.json), else dataset.json's default, else official."""
    meta = read_dataset_meta(Path(data_dir)) if data_dir is not None else {}
    return info.recorded_split_scheme or str(meta.get("default_split_scheme") or "official")


def split_indices(index: ShardIndex, info: RunInfo, split: str, *, data_dir: Path | None = None) -> np.ndarray:
    """Indices of `split` (test|val) in the shard index, rebuilt exactly as training split the data."""
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}", f"choose one of {', '.join(SPLITS)}")
    scheme = split_scheme_of(info, data_dir)
    seed = int((info.config.get("data") or {}).get("seed", 0))
    idx = np.asarray(make_split(index.filenames, scheme, seed=seed)[split], dtype=np.int64)
    if idx.size == 0:
        raise BadInputError(
            f"the {split} split of these data is empty under the {scheme!r} split scheme",
            "evaluate on data that hold that split (e.g. the published shards for `official`)",
        )
    return idx


def predict_split(
    run: LoadedModel,
    data_dir: Path,
    split: str = "test",
    *,
    tta: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    index: ShardIndex | None = None,
) -> dict[str, Predictions]:
    """Predictions of `run` on `split` of `data_dir`: `{"plain": ...}` and, with `tta`, `"tta"`."""
    index = index or ShardIndex.open(Path(data_dir))
    idx = split_indices(index, run.info, split, data_dir=data_dir)
    names = [index.filenames[i] for i in idx]
    log.info("predicting %d %s images with %s", len(idx), split, run.name)
    probs = predict_images(
        run.model, (index.read_image(int(i)) for i in idx), run.transform(data_dir), tta=tta,
        batch_size=batch_size, device=device,
    )  # fmt: skip
    y14 = label_matrix([index.labels[i] for i in idx])
    ybin = (y14.sum(axis=1) > 0).astype(np.float32)
    pids = patient_ids(names)
    return {
        key: Predictions(
            filenames=names,
            patient_ids=pids,
            y14=y14,
            ybin=ybin,
            p14=p[:, :14],
            pbin=p[:, 14],
            source=run.name + (" +TTA" if key == "tta" else ""),
        )
        for key, p in probs.items()
    }
