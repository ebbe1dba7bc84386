"""Run a trained model over a split of a data set: probabilities, labels, file names and patient ids.

Images get the evaluation transform the loader uses (decode -> resize with INTER_AREA -> CLAHE when the run's
config and the data set ask for it -> normalise with the run's mean/std); the split is rebuilt from the
run's split scheme and seed, so the test images are exactly the ones training never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.data.shards import ShardIndex
from chexvision.data.splits import make_split, patient_ids
from chexvision.data.transforms import MEAN, STD, apply_clahe, normalize_cpu, resize_to, resolve_clahe
from chexvision.errors import BadInputError
from chexvision.evaluate.predictions import Predictions
from chexvision.files import read_json_object
from chexvision.labels import label_matrix

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "EvalTransform",
    "LoadedRun",
    "load_run",
    "predict_images",
    "predict_split",
    "split_indices",
    "split_scheme_of",
]

log = logging.getLogger(__name__)
SPLITS = ("test", "val", "train")


@dataclass
class LoadedRun:
    """A trained model rebuilt from a run directory, with the config it was trained under."""

    run_dir: Path
    name: str
    model: nn.Module
    config: dict[str, Any]
    num_params: int

    @property
    def data_cfg(self) -> dict[str, Any]:
        return dict(self.config.get("data") or {})


def load_run(run_dir: Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of `run_dir` from config.json + model.safetensors (no pickle, no download)."""
    from chexvision.hub.load import load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run directory {run_dir} not found", "pass a folder written by `chexvision train`")
    model, config = load_model(str(run_dir), device=str(device))
    run_json = run_dir / "run.json"
    name = str(read_json_object(run_json).get("run_id") or run_dir.name) if run_json.is_file() else run_dir.name
    return LoadedRun(run_dir, name, model, config, sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class EvalTransform:
    """uint8 HxW -> normalised float32 [1, size, size], as the loader does for validation/test images."""

    size: int
    mean: float = MEAN
    std: float = STD
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_grid: int = 8

    @classmethod
    def from_config(cls, config: dict[str, Any], data_dir: Path | None = None) -> EvalTransform:
        data = dict(config.get("data") or {})
        if "size" not in data:
            raise BadInputError("config.json has no data.size", "re-train with a current version")
        aug = dict(data.get("aug") or config.get("aug") or {})
        mode = str(aug.get("clahe", "auto"))
        return cls(
            size=int(data["size"]),
            mean=float(data.get("mean", MEAN)),
            std=float(data.get("std", STD)),
            clahe=resolve_clahe(mode, _dataset_meta(data_dir)) if data_dir is not None else mode == "always",
            clahe_clip=float(aug.get("clahe_clip", 2.0)),
            clahe_grid=int(aug.get("clahe_grid", 8)),
        )

    def resized(self, img: np.ndarray) -> np.ndarray:
        """The uint8 image the model sees (before normalisation), as the Dataset makes it: resize, then CLAHE."""
        img = resize_to(img, self.size)
        return apply_clahe(img, self.clahe_clip, self.clahe_grid) if self.clahe else img

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return normalize_cpu(self.resized(img), self.mean, self.std)[None]

    @property
    def black(self) -> float:
        return -self.mean / self.std


def _dataset_meta(data_dir: Path | None) -> dict[str, Any]:
    path = Path(data_dir) / "dataset.json" if data_dir is not None else None
    if path is None or not path.is_file():
        return {}
    return read_json_object(path, "fix or delete it (`chexvision data synth|build|download` write it)")


def split_scheme_of(config: dict[str, Any], data_dir: Path | None = None, run_dir: Path | None = None) -> str:
    """The scheme training used: config, else run.json/metrics.json, else dataset.json's default, else official."""
    scheme = (config.get("data") or {}).get("split_scheme")
    for name, keys in (("run.json", ("dataset", "split_scheme")), ("metrics.json", ("split_scheme",))):
        if scheme or run_dir is None or not (Path(run_dir) / name).is_file():
            continue
        value: Any = read_json_object(Path(run_dir) / name)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        scheme = value
    return str(scheme or _dataset_meta(data_dir).get("default_split_scheme") or "official")


def split_indices(
    index: ShardIndex, config: dict[str, Any], split: str, *, data_dir: Path | None = None, run_dir: Path | None = None
) -> np.ndarray:
    """Indices of `split` (test|val) in the shard index, rebuilt exactly as training split the data."""
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}", f"choose one of {', '.join(SPLITS)}")
    scheme = split_scheme_of(config, data_dir, run_dir)
    seed = int((config.get("data") or {}).get("seed", 0))
    idx = np.asarray(make_split(index.filenames, scheme, seed=seed)[split], dtype=np.int64)
    if idx.size == 0:
        raise BadInputError(
            f"the {split} split of these data is empty under the {scheme!r} split scheme",
            "evaluate on data that hold that split (e.g. the published shards for `official`)",
        )
    return idx


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def predict_images(
    model: nn.Module,
    images: Sequence[np.ndarray] | Iterator[np.ndarray],
    transform: EvalTransform,
    *,
    tta: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Probabilities [N, 15] (14 labels then binary) for uint8 images: `{"plain": ..., "tta": ...}`."""
    import torch

    from chexvision.evaluate.tta import predict_views

    dev = torch.device(device)
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


def predict_split(
    run: LoadedRun,
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
    idx = split_indices(index, run.config, split, data_dir=data_dir, run_dir=run.run_dir)
    transform = EvalTransform.from_config(run.config, data_dir)
    names = [index.filenames[i] for i in idx]
    log.info("predicting %d %s images with %s", len(idx), split, run.name)
    probs = predict_images(
        run.model,
        (index.read_image(int(i)) for i in idx),
        transform,
        tta=tta,
        batch_size=batch_size,
        device=device,
    )
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
