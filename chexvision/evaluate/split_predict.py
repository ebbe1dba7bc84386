"""Run a loaded model over a split of a data set: probabilities, labels, file names and patient ids.

Images get the model's evaluation transform for that data folder (`LoadedModel.transform(data_dir)`: the one
CLAHE rule of `chexvision.inference.preprocess`); the split is rebuilt from the run's split scheme and seed with the
stable per-patient rule of `chexvision.data.splits`, so a folder holding only some of the images gets the same
assignment. `check_split` says which split fingerprint an evaluation scores and refuses images training saw.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.data.splits import fingerprint, make_split, patient_ids
from chexvision.errors import BadInputError
from chexvision.evaluate.predictions import Predictions, StartStep
from chexvision.inference.predict import predict_images
from chexvision.labels import label_matrix
from chexvision.rundir import RunInfo

if TYPE_CHECKING:
    import torch

    from chexvision.inference.load import LoadedModel

__all__ = [
    "SPLITS",
    "SplitOverlapError",
    "check_split",
    "external_source",
    "predict_split",
    "split_indices",
    "split_scheme_of",
]

log = logging.getLogger(__name__)
SPLITS = ("test", "val", "train")


def split_scheme_of(info: RunInfo, data_dir: Path | None = None) -> str:
    """The scheme training used (config, run.json, metrics.json), else dataset.json's default, else official."""
    meta = read_dataset_meta(Path(data_dir)) if data_dir is not None else {}
    return info.recorded_split_scheme or str(meta.get("default_split_scheme") or "official")


def external_source(info: RunInfo, data_dir: Path | None) -> str | None:
    """The set's name when `data_dir` is an external set (`data build --source ...`: dataset.json `external`) that
    the run was not trained on: then every image is one external test set. None otherwise."""
    meta = read_dataset_meta(Path(data_dir)) if data_dir is not None else {}
    if "external" not in meta:
        return None
    source = str(meta.get("source") or "external")
    return None if info.dataset.get("source") == source else source


def split_indices(index: ShardIndex, info: RunInfo, split: str, *, data_dir: Path | None = None) -> np.ndarray:
    """Indices of `split` (test|val) in the shard index, rebuilt exactly as training split the data; an external
    set (`external_source`) is all test."""
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}", f"choose one of {', '.join(SPLITS)}")
    if (source := external_source(info, data_dir)) is not None:
        if split != "test":
            raise BadInputError(f"{data_dir} is an external {source} set: all of it is test data",
                                "evaluate it with --split test (thresholds are cross-fitted by patient)")  # fmt: skip
        return np.arange(len(index), dtype=np.int64)
    scheme = split_scheme_of(info, data_dir)
    idx = np.asarray(make_split(index.filenames, scheme, seed=_seed_of(info))[split], dtype=np.int64)
    if idx.size == 0:
        raise BadInputError(
            f"the {split} split of these data is empty under the {scheme!r} split scheme",
            "evaluate on data that hold that split (e.g. the published shards for `official`)",
        )
    return idx


class SplitOverlapError(BadInputError):
    """Evaluated images that were in the run's training split (by its recorded fingerprint or its split rule)."""

    def __init__(self, split: str, count: int, overlap: int, run_id: str, train_count: int | None) -> None:
        train = f" of {train_count} images" if train_count is not None else ""
        super().__init__(
            f"refusing to score the {split} split ({count} images): {overlap} of them are in run {run_id}'s "
            f"training split{train}",
            "evaluate on the data folder and split the run was trained with; images a model was trained on "
            "say nothing about how it generalises",
        )
        self.split, self.count, self.overlap = split, count, overlap


def _training_split_of(info: RunInfo, scheme: str, seed: int) -> tuple[str, int]:
    """(scheme, seed) the run's training split was drawn with: run.json's record, else the config's."""
    dataset = info.dataset
    return str(dataset.get("split_scheme") or scheme), int(dataset.get("seed", seed))


def check_split(index: ShardIndex, info: RunInfo, split: str, *, data_dir: Path | None = None) -> dict[str, Any]:
    """Which images `split` scores and whether they are the ones training held out; refuses training images.

    Returns `{"name", "count", "sha256", "matches_training"}` (`matches_training`: the fingerprint equals run.json's
    for that split; None when the run recorded none) plus `"warning"` when there is something to say. Raises
    `SplitOverlapError` when an evaluated image is in the run's training split: its recorded fingerprint equals the
    evaluated images', or the training split rule (run.json's scheme and seed, recomputed over these images'
    patients) puts one of them in train.
    """
    idx = split_indices(index, info, split, data_dir=data_dir)
    names = [index.filenames[i] for i in idx]
    scored = fingerprint(names)
    if (source := external_source(info, data_dir)) is not None:  # another data set: its patients are not NIH's
        return {"name": f"external {source}", **scored, "matches_training": None}
    recorded = info.split_fingerprints
    scheme, seed = _training_split_of(info, split_scheme_of(info, data_dir), _seed_of(info))
    overlap = len(make_split(names, scheme, seed=seed)["train"])
    train_fp = (recorded or {}).get("train")
    if train_fp is not None and train_fp.get("sha256") == scored["sha256"]:
        overlap = max(overlap, scored["count"])
    if overlap:
        train_count = int(train_fp["count"]) if train_fp is not None and "count" in train_fp else None
        raise SplitOverlapError(split, scored["count"], overlap, info.run_id, train_count)
    doc: dict[str, Any] = {"name": split, **scored, "matches_training": None}
    if recorded is None:
        doc["warning"] = (
            f"run {info.run_id} records no split fingerprints (trained before they were recorded): the evaluated "
            "images are checked against its training split by today's split rule only, which it may not have used"
        )
    elif split in recorded:
        doc["matches_training"] = recorded[split].get("sha256") == scored["sha256"]
        if not doc["matches_training"]:
            doc["warning"] = (
                f"the {split} split here ({scored['count']} images) is not the one run {info.run_id} held out "
                f"({recorded[split].get('count')} images): a partial or different data folder; no image of it "
                "was a training image"
            )
    return doc


def _seed_of(info: RunInfo) -> int:
    return int((info.config.get("data") or {}).get("seed", 0))


def predict_split(
    run: LoadedModel,
    data_dir: Path,
    split: str = "test",
    *,
    tta: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    index: ShardIndex | None = None,
    progress: StartStep | None = None,
) -> dict[str, Predictions]:
    """Predictions of `run` on `split` of `data_dir`: `{"plain": ...}` and, with `tta`, `"tta"`.
    `progress(description, total)` is told each image as it is read."""
    index = index or ShardIndex.open(Path(data_dir))
    idx = split_indices(index, run.info, split, data_dir=data_dir)
    names = [index.filenames[i] for i in idx]
    log.info("predicting %d %s images with %s", len(idx), split, run.name)
    advance = progress(f"predicting {len(idx)} {split} images with {run.name}", len(idx)) if progress else None

    def images() -> Iterator[np.ndarray]:
        for i in idx:
            yield index.read_image(int(i))
            if advance is not None:
                advance(1)

    probs = predict_images(run.model, images(), run.transform(data_dir), tta=tta, batch_size=batch_size, device=device)
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
