"""A trained model from a folder: config.json rebuilds the architecture, model.safetensors fills it; no pickle.

The folder is a run directory (`chexvision train`), a `--hub-dir` repo head or tag snapshot, or a downloaded Hub
snapshot: they share the file names of `chexvision.rundir`. Turning a spec (`owner/name@rev`, `FOLDER@TAG`) into
such a folder is `chexvision.hub.resolve`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.inference.preprocess import EvalTransform, eval_transform
from chexvision.rundir import CONFIG_JSON, WEIGHTS, RunInfo, check_files, read_run_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["LoadedModel", "load_model_dir"]


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode, with the run files it came from (`info`) and the name reports use."""

    model: nn.Module
    info: RunInfo
    name: str

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    @property
    def config(self) -> dict[str, Any]:
        return self.info.config

    @property
    def dataset(self) -> dict[str, Any]:
        return self.info.dataset

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def transform(self, data_dir: Path | None = None) -> EvalTransform:
        """The evaluation transform for the shards of `data_dir`, or for image files (None)."""
        return eval_transform(self.config, self.dataset, data_dir=data_dir)


def load_model_dir(folder: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of `folder` (config.json + model.safetensors) in eval mode on `device`.

    run.json, when present, names the run and records the training data (which decides CLAHE); a damaged one does
    not block loading the weights. When it records the files' sha256 (run.json "files"), config.json and
    model.safetensors must match it: a changed file is a FilesChangedError (exit 2) naming it, whatever the folder
    is (a run directory, a `--hub-dir` snapshot, a Hub download).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from chexvision.models import build_from_config

    info = read_run_dir(Path(folder), required=(CONFIG_JSON, WEIGHTS), strict=False,
                        hint="a model folder needs the config.json and model.safetensors its run wrote")  # fmt: skip
    check_files(info.run_dir, info.run, (CONFIG_JSON, WEIGHTS))
    if not isinstance(info.config.get("model"), dict):
        raise BadInputError(f'{info.run_dir / CONFIG_JSON} has no "model" section', "was it written by training?")
    model = build_from_config(info.config["model"])
    model.run_config = dict(info.config)  # save_pretrained writes it back: data size and normalisation included
    try:
        state = load_file(str(info.weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise BadInputError(f"cannot read {info.weights}: {exc}", "publish or fetch the run again") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BadInputError(
            f"{info.weights} does not match the architecture in {info.run_dir / CONFIG_JSON}: {first}",
            "publish config.json and model.safetensors from the same run",
        ) from exc
    return LoadedModel(model.to(device).eval(), info, info.run_id)
