"""A model spec -> the local folder holding it, and the model loaded from there (by `chexvision.inference`).

A spec is one of:

- a folder holding config.json + model.safetensors (a run directory, a `--hub-dir` repo head, a snapshot);
- `FOLDER@TAG`: the snapshot of TAG in a `--hub-dir` repo folder;
- `owner/name[@REVISION]`: a Hub model repo at a tag, branch or commit (downloaded through `HubClient`; cached by
  huggingface_hub, so it works offline once downloaded).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.hf import HubClient
from chexvision.hub.publish import folder_revision
from chexvision.rundir import CONFIG_JSON, RUN_JSON, WEIGHTS

if TYPE_CHECKING:
    from torch import nn

    from chexvision.inference.load import LoadedModel

__all__ = ["MODEL_FILES", "load_model", "load_spec", "resolve_model_dir"]

MODEL_FILES = (CONFIG_JSON, WEIGHTS, RUN_JSON)  # run.json is optional (older uploads lack it)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _split_revision(spec: str) -> tuple[str, str | None]:
    base, sep, revision = spec.rpartition("@")
    return (base, revision) if sep and base and revision else (spec, None)


def resolve_model_dir(spec: str, *, client: HubClient | None = None) -> Path:
    """The local folder holding config.json + model.safetensors for `spec` (downloading from the Hub if needed)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    base, revision = _split_revision(spec)
    if revision is not None and Path(base).expanduser().is_dir():
        return folder_revision(Path(base).expanduser(), revision)
    if _REPO_RE.match(base) and not path.exists():
        client = client or HubClient(require_token=False)  # public repos need no token; HfApi finds one if set
        return client.download(base, revision=revision, filenames=MODEL_FILES)
    raise BadInputError(
        f"model {spec!r} is neither a folder nor a Hub repo id",
        "pass a run or --hub-dir folder (optionally FOLDER@TAG) or `owner/name[@revision]`",
    )


def load_spec(spec: str, *, client: HubClient | None = None, device: str = "cpu") -> LoadedModel:
    """The model of `spec` in eval mode on `device`, with the run files that came with it."""
    from chexvision.inference.load import load_model_dir

    return load_model_dir(resolve_model_dir(spec, client=client), device)


def load_model(spec: str, *, client: HubClient | None = None, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model of `spec` and its config.json (+ run.json's `dataset` block, when present, as `config["dataset"]`)."""
    loaded = load_spec(spec, client=client, device=device)
    config = dict(loaded.config)
    if loaded.dataset and "dataset" not in config:
        config["dataset"] = loaded.dataset  # what the model was trained on: decides CLAHE for prediction
    return loaded.model, config
