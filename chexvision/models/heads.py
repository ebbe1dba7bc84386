"""The surface every CheXVision model shares: a 512-d neck, two heads, and backbone freezing.

A backbone subclass builds `self.features` (everything up to the last convolutional feature map) and
implements `forward_features`; `CheXModel` supplies `forward_head` and `forward`, so Grad-CAM, the trainer
and the exporter see one surface for every architecture. The neck mirrors the original design:
global average pool -> Linear(C, 512) -> ReLU -> Dropout ->
{Linear(512, 14) multi-label, Linear(512, 1) binary "any finding"}.

`forward` returns `CheXOutput(findings, abnormal)`, a NamedTuple, so `multi, binary = model(x)` keeps working;
`model.labels` names the findings columns. `CheXModel` is a `huggingface_hub.PyTorchModelHubMixin`:
`save_pretrained(folder)` writes the config.json + model.safetensors a run directory holds, and
`CheXModel.from_pretrained("owner/name", revision=...)` (or a folder) rebuilds whichever architecture config.json
names. `chexvision.load(spec)` wraps the same files in a predictor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Self

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from chexvision.errors import BadInputError
from chexvision.labels import LABELS, NUM_LABELS
from chexvision.models import registry
from chexvision.rundir import CONFIG_JSON, WEIGHTS, check_files

__all__ = ["ABNORMAL", "FEATURE_DIM", "CheXModel", "CheXOutput", "DualHead", "count_parameters"]

FEATURE_DIM = 512  # width of the shared feature both heads read
ABNORMAL = "abnormal"  # the name of the binary head's output: any of the 14 findings (vs No Finding)
HUB_TAGS = ["chexvision", "chest-x-ray", "medical-imaging", "multi-label-classification"]


class CheXOutput(NamedTuple):
    """A model's logits: `findings` [B, 14] (columns in `model.labels` order) and `abnormal` [B] (any finding)."""

    findings: Tensor
    abnormal: Tensor


class DualHead(nn.Module):
    """Pooled backbone features [B, C] -> (multi-label logits [B, num_classes], binary logits [B])."""

    def __init__(self, in_features: int, *, num_classes: int = NUM_LABELS, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.neck = nn.Sequential(
            nn.Linear(in_features, FEATURE_DIM),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self.multi = nn.Linear(FEATURE_DIM, num_classes)
        self.binary = nn.Linear(FEATURE_DIM, 1)

    def forward(self, pooled: Tensor) -> CheXOutput:
        feature = self.neck(pooled)
        return CheXOutput(self.multi(feature), self.binary(feature).squeeze(-1))


class CheXModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="chexvision",
    tags=HUB_TAGS,
    pipeline_tag="image-classification",
    license="apache-2.0",
):
    """Base class: subclasses set `self.features` and `self.head` and implement `forward_features`.

    Hub contract (`PyTorchModelHubMixin`): `save_pretrained`, `push_to_hub` and `from_pretrained` read and write
    the run directory's config.json (the training config; its "model" section rebuilds the architecture) and
    model.safetensors, so a published folder loads both through `chexvision.load` and `from_pretrained`.
    """

    feature_dim: int = FEATURE_DIM
    features: nn.Module
    head: DualHead
    model_cfg: dict[str, Any] | None = None  # {"name", "kwargs"} that rebuild it; set by create_model
    run_config: dict[str, Any] | None = None  # the config.json it was loaded from (data size, normalisation, ...)
    labels: tuple[str, ...] = LABELS  # the findings logits' columns, in order

    def __init__(self) -> None:
        super().__init__()
        self._backbone_frozen = False

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, 1, H, W] -> last convolutional feature map [B, C, h, w] (the Grad-CAM target)."""
        raise NotImplementedError

    def forward_head(self, feat_map: Tensor) -> CheXOutput:
        """Feature map [B, C, h, w] -> CheXOutput(findings logits [B, 14], abnormal logits [B])."""
        pooled = F.adaptive_avg_pool2d(feat_map, 1).flatten(1)
        return self.head(pooled)

    def forward(self, x: Tensor) -> CheXOutput:
        return self.forward_head(self.forward_features(x))

    # --- the Hub contract (PyTorchModelHubMixin) ------------------------------------------------------------

    def hub_config(self) -> dict[str, Any]:
        """The config.json `save_pretrained` writes: the config it was loaded with (or {}), its "model" section
        replaced by what rebuilds this model (no pretrained download: the weights are in model.safetensors)."""
        if self.model_cfg is None:
            raise BadInputError("this model has no model_cfg", "build it with chexvision.models.create_model")
        config = dict(self.run_config or {})
        config["model"] = {**dict(config.get("model") or {}), **self.model_cfg, "pretrained": False, "weights": None}
        return json.loads(json.dumps(config))

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(Path(save_directory) / WEIGHTS))
        (Path(save_directory) / CONFIG_JSON).write_text(json.dumps(self.hub_config(), indent=2) + "\n")

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: Mapping[str, Any] | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> Self:
        if os.path.isdir(model_id):
            folder = Path(model_id)
            check_files(folder, names=(CONFIG_JSON, WEIGHTS))  # run.json's recorded sha256, when it has them
            weights = folder / WEIGHTS
        else:
            from huggingface_hub import hf_hub_download

            weights = Path(
                hf_hub_download(
                    model_id, WEIGHTS, revision=revision, cache_dir=cache_dir, force_download=force_download,
                    token=token, local_files_only=local_files_only,
                )
            )  # fmt: skip
        return cls.from_config_and_weights(dict(config or {}), weights, device=map_location, strict=strict)

    @classmethod
    def from_config_and_weights(
        cls, config: Mapping[str, Any], weights: Path, *, device: str | torch.device = "cpu", strict: bool = True
    ) -> Self:
        """The model config.json's "model" section names, filled from `weights`, in eval mode on `device`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not isinstance(config.get("model"), Mapping):
            raise BadInputError(f'{CONFIG_JSON} has no "model" section', "was it written by training?")
        model = registry.build_from_config(config["model"])
        if not isinstance(model, cls):
            raise BadInputError(
                f"{CONFIG_JSON} describes a {type(model).__name__}, not a {cls.__name__}",
                "load it with chexvision.models.CheXModel.from_pretrained",
            )
        try:
            state = load_file(str(weights), device=str(device))
        except (SafetensorError, OSError) as exc:
            raise BadInputError(f"cannot read {weights}: {exc}", "publish or fetch the run again") from exc
        try:
            model.load_state_dict(state, strict=strict)
        except RuntimeError as exc:
            raise BadInputError(
                f"{weights} does not match the architecture in {CONFIG_JSON}: {str(exc).splitlines()[0]}",
                "publish config.json and model.safetensors from the same run",
            ) from exc
        model.run_config = dict(config)
        return model.to(device).eval()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.features.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) training the backbone: no gradients, and BatchNorm running statistics held fixed.

        The BatchNorm layers stay in eval mode through later `model.train()` calls until unfrozen, because the
        trainer calls `train()` at the start of every epoch.
        """
        self._backbone_frozen = frozen
        for param in self.features.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if self._backbone_frozen:
            for module in self.features.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def count_parameters(name: str, **kwargs: Any) -> int:
    """Parameter count of `name` built with `kwargs`, on the meta device (no memory, no init cost; imports torch)."""
    with torch.device("meta"):
        model = registry.create_model(name, pretrained=False, weights=None, **kwargs)
    return sum(p.numel() for p in model.parameters())
